// swift-tools-version:6.0
import PackageDescription

// Linux only: glibc, pthreads, signals and the FastCGI fd-0 convention are assumed throughout.
let package = Package(
    name: "TenantGate",
    products: [
        .executable(name: "tenantgate", targets: ["tenantgate"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        .systemLibrary(name: "CFastCGI", pkgConfig: "fcgi", providers: [.apt(["libfcgi-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CPCRE2", pkgConfig: "libpcre2-8", providers: [.apt(["libpcre2-dev"])]),
        // PostgreSQL's client, for deployments that share one store between several hosts.
        .systemLibrary(name: "CPostgres", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        // No pkgConfig: its .pc file adds a define SwiftPM refuses; the header is in /usr/include.
        .systemLibrary(name: "CUtf8proc", providers: [.apt(["libutf8proc-dev"])]),
        // Atomics on memory shared between worker processes (no library: compiler built-ins).
        .systemLibrary(name: "CAtomics"),
        // A fault-injecting SQLite VFS for the storage-fault tests (C: SQLite's VFS is a C interface).
        .target(name: "CSQLiteFaults", dependencies: ["CSQLite"]),
        // The only Swift module that imports C.
        .target(
            name: "TenantGateSystem",
            dependencies: [
                "CFastCGI", "CSQLite", "CSQLiteFaults", "CCurl", "COpenSSL", "CAtomics", "CPCRE2", "CUtf8proc",
                "CPostgres",
            ]
        ),
        // The domain: no C, no I/O.
        .target(name: "TenantGateCore"),
        // The fuzz targets (scripts/fuzz builds them with libFuzzer; the unit tests replay their corpora).
        .target(name: "TenantGateFuzzTargets", dependencies: ["TenantGateCore", "TenantGateServing"]),
        .target(
            name: "TenantGateStore",
            dependencies: ["TenantGateCore", "TenantGateSystem", "Yams"]
        ),
        // What the front ends and the responders share: the request, the response sink, the admin responder.
        .target(name: "TenantGateServing", dependencies: ["TenantGateCore", "TenantGateSystem"]),
        // The request path: routing, the pipeline's stages, upstream calls; storage only through the ports
        // the core declares (no Store).
        .target(
            name: "TenantGateHTTP",
            dependencies: ["TenantGateCore", "TenantGateSystem", "TenantGateServing"]
        ),
        // The process: supervisor, worker threads and the FastCGI accept loop, the group-commit queues, the
        // config poller, heartbeat and checkpointer; it wires the Store's ports into the request path.
        .target(
            name: "TenantGateRuntime",
            dependencies: [
                "TenantGateCore", "TenantGateSystem", "TenantGateStore", "TenantGateServing", "TenantGateHTTP",
            ]
        ),
        // The admin page: HTML type, pages, forms, sessions, CSRF; no SQL, no C.
        .target(
            name: "TenantGateAdmin",
            dependencies: ["TenantGateCore", "TenantGateSystem", "TenantGateStore", "TenantGateServing"]
        ),
        .executableTarget(
            name: "tenantgate",
            dependencies: [
                "TenantGateCore", "TenantGateSystem", "TenantGateStore", "TenantGateServing", "TenantGateHTTP",
                "TenantGateRuntime", "TenantGateAdmin",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "TenantGateCoreTests", dependencies: ["TenantGateCore", "TenantGateFuzzTargets"]),
        .testTarget(
            name: "TenantGateAdminTests", dependencies: ["TenantGateAdmin", "TenantGateServing", "TenantGateCore"]
        ),
        .testTarget(
            name: "TenantGateStoreTests", dependencies: ["TenantGateStore", "TenantGateSystem", "TenantGateCore"]
        ),
        .testTarget(
            name: "TenantGateHTTPTests",
            dependencies: [
                "TenantGateHTTP", "TenantGateRuntime", "TenantGateServing", "TenantGateStore", "TenantGateSystem",
                "TenantGateCore",
            ]
        ),
    ]
)
