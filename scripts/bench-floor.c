/* The floor of TenantGate's shape, for scripts/bench row (m): a FastCGI app in C that does nothing but
 * what every gateway request must (libfcgi reads the request, libcurl sends its body to the upstream over
 * a kept connection, the answer goes back), with one thread per connection like the worker pool. No
 * parsing, auth, limits, accounting or logs: what TenantGate costs above this is its own work.
 * Usage: bench-floor <upstream url> <unix socket path> <threads> */
#include <fcgiapp.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *upstream;

struct answer { char *bytes; size_t length, capacity; };

static size_t collect(char *data, size_t size, size_t count, void *user) {
    struct answer *a = user;
    size_t n = size * count;
    if (a->length + n > a->capacity) {
        size_t capacity = (a->length + n) * 2;
        char *grown = realloc(a->bytes, capacity);
        if (!grown) return 0;
        a->bytes = grown;
        a->capacity = capacity;
    }
    memcpy(a->bytes + a->length, data, n);
    a->length += n;
    return n;
}

static void *serve(void *unused) {
    (void)unused;
    FCGX_Request request;
    FCGX_InitRequest(&request, 0, 0);
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, upstream);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    struct answer answer = {0};
    enum { body_size = 1 << 16 };
    char *body = malloc(body_size);
    if (!body) return NULL;
    while (FCGX_Accept_r(&request) >= 0) {
        int length = FCGX_GetStr(body, body_size, request.in);
        answer.length = 0;
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)length);
        curl_easy_setopt(curl, CURLOPT_COPYPOSTFIELDS, body);
        if (curl_easy_perform(curl) == CURLE_OK) {
            FCGX_FPrintF(request.out, "Status: 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
                         (int)answer.length);
            FCGX_PutStr(answer.bytes, (int)answer.length, request.out);
        } else {
            FCGX_FPrintF(request.out, "Status: 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        }
        FCGX_Finish_r(&request);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s <upstream url> <unix socket path> <threads>\n", argv[0]);
        return 2;
    }
    upstream = argv[1];
    int threads = atoi(argv[3]);
    if (threads < 1 || threads > 4096) return 2;
    FCGX_Init();
    curl_global_init(CURL_GLOBAL_ALL);
    unlink(argv[2]);
    int fd = FCGX_OpenSocket(argv[2], 1024);
    if (fd < 0 || dup2(fd, 0) < 0) return 1;
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    if (!ids) return 1;
    for (int i = 0; i < threads; i++) pthread_create(&ids[i], NULL, serve, NULL);
    for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
    return 0;
}
