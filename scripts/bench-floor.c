/* The floor of TenantGate's shape, for scripts/bench row (m): a FastCGI app in C that does nothing but
 * what every gateway request must (libfcgi reads the request, libcurl sends its body to the upstream over
 * a kept connection, the answer goes back), with one thread per connection like the worker pool. No
 * parsing, auth, limits, accounting or logs: what TenantGate costs above this is its own work.
 * Mode "multi" (BENCH_FLOOR=multi scripts/bench): the other design the capacity issue names — the request
 * threads hand each upstream call to one event-loop thread driving curl_multi (connections kept) and wait
 * for it.
 * Usage: bench-floor <upstream url> <unix socket path> <threads> [thread|multi] */
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

/* Mode "multi": a call handed to the loop thread, and its answer. */
struct call {
    const char *body;
    int length;
    struct answer answer;
    CURLcode rc;
    int done;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    struct call *next;
};

static pthread_mutex_t calls_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct call *calls;
static CURLM *multi;

static void *drive(void *unused) {
    (void)unused;
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    CURL *spare[1024];
    int spares = 0;
    for (;;) {
        pthread_mutex_lock(&calls_mutex);
        struct call *c = calls;
        calls = NULL;
        pthread_mutex_unlock(&calls_mutex);
        for (; c; c = c->next) {
            CURL *easy = spares ? spare[--spares] : curl_easy_init();
            curl_easy_setopt(easy, CURLOPT_URL, upstream);
            curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
            curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
            curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect);
            curl_easy_setopt(easy, CURLOPT_WRITEDATA, &c->answer);
            curl_easy_setopt(easy, CURLOPT_PRIVATE, c);
            curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long)c->length);
            curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, c->body);
            curl_multi_add_handle(multi, easy);
        }
        int running, left;
        curl_multi_perform(multi, &running);
        CURLMsg *message;
        while ((message = curl_multi_info_read(multi, &left))) {
            if (message->msg != CURLMSG_DONE) continue;
            struct call *done = NULL;
            curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, (char **)&done);
            curl_multi_remove_handle(multi, message->easy_handle);
            if (spares < 1024) spare[spares++] = message->easy_handle;
            else curl_easy_cleanup(message->easy_handle);
            pthread_mutex_lock(&done->mutex);
            done->rc = message->data.result;
            done->done = 1;
            pthread_cond_signal(&done->cond);
            pthread_mutex_unlock(&done->mutex);
        }
        curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    return NULL;
}

static void *serve_multi(void *unused) {
    (void)unused;
    FCGX_Request request;
    FCGX_InitRequest(&request, 0, 0);
    enum { body_size = 1 << 16 };
    char *body = malloc(body_size);
    if (!body) return NULL;
    struct call c = {.body = body};
    pthread_mutex_init(&c.mutex, NULL);
    pthread_cond_init(&c.cond, NULL);
    while (FCGX_Accept_r(&request) >= 0) {
        c.length = FCGX_GetStr(body, body_size, request.in);
        c.answer.length = 0;
        c.done = 0;
        pthread_mutex_lock(&calls_mutex);
        c.next = calls;
        calls = &c;
        pthread_mutex_unlock(&calls_mutex);
        curl_multi_wakeup(multi);
        pthread_mutex_lock(&c.mutex);
        while (!c.done) pthread_cond_wait(&c.cond, &c.mutex);
        pthread_mutex_unlock(&c.mutex);
        if (c.rc == CURLE_OK) {
            FCGX_FPrintF(request.out, "Status: 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
                         (int)c.answer.length);
            FCGX_PutStr(c.answer.bytes, (int)c.answer.length, request.out);
        } else {
            FCGX_FPrintF(request.out, "Status: 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        }
        FCGX_Finish_r(&request);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s <upstream url> <unix socket path> <threads> [thread|multi]\n", argv[0]);
        return 2;
    }
    int use_multi = argc == 5 && strcmp(argv[4], "multi") == 0;
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
    if (use_multi) {
        multi = curl_multi_init();
        pthread_t loop;
        pthread_create(&loop, NULL, drive, NULL);
    }
    for (int i = 0; i < threads; i++) pthread_create(&ids[i], NULL, use_multi ? serve_multi : serve, NULL);
    for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
    return 0;
}
