// The ports between the request path and the store: what the request path needs from storage, as
// protocols. `TenantGateStore` implements them over its pooled SQLite and PostgreSQL connections; the
// runtime wires them (its one composition root); the pipeline's tests run against in-memory ones. Every
// method names the tenant it acts for: no port can reach across tenants by omission.

/// The shared accounting, read outside admission (admission itself is `Reserving` and the lease book).
public protocol AccountingReads: Sendable {
    /// The refusal any admission of `tenant` would get now because a limit is reached already (read
    /// only; see `AccountingStore.refusalNow`).
    func refusalNow(tenant: String, limits: Limits, nowMs: Int64, tokens: Bool, money: Bool) throws -> LimitRefusal?
    /// Every hard budget that applies to `tenant`, with what it has left now.
    func budgetsLeft(tenant: String, limits: Limits, nowMs: Int64) throws -> [BudgetLeft]
    /// What is used now against each limit (for `/v1/tenant-info`).
    func usageNow(tenant: String, nowMs: Int64) throws -> UsageNow
    /// Spend (nano-USD) per tenant in the current day and month (for `/metrics`).
    func spendByTenant(nowMs: Int64) throws -> [String: (day: Int64, month: Int64)]
}

/// What a tenant used now against each of its limits.
public struct UsageNow: Sendable, Equatable {
    /// Requests and tokens in the rolling 60 s windows.
    public var requests: Int64
    public var tokens: Int64
    public var dayTokens: Int64
    public var dayNano: Int64
    public var monthTokens: Int64
    public var monthNano: Int64

    public init(
        requests: Int64, tokens: Int64, dayTokens: Int64, dayNano: Int64, monthTokens: Int64, monthNano: Int64
    ) {
        self.requests = requests
        self.tokens = tokens
        self.dayTokens = dayTokens
        self.dayNano = dayNano
        self.monthTokens = monthTokens
        self.monthNano = monthNano
    }
}

/// Check-and-reserve against the shared counters (the runtime batches these into group commits).
public protocol Reserving: Sendable {
    /// Checks and reserves `job`; throws `LimitRefusal` when a hard limit refuses it.
    func reserve(_ job: ReserveJob) throws -> Admission
    /// Queues `job` and returns at once; `completion` gets the admission (nil when refused or failed).
    func reserveLater(_ job: ReserveJob, completion: @escaping @Sendable (Admission?) -> Void)
}

/// Where settlements go (the runtime's group-commit queue).
public protocol SettlementQueueing: Sendable {
    /// Queues one item; returns its sequence number (for `waitWritten`).
    @discardableResult func enqueue(_ item: Settlement) -> Int64
    /// Waits until the item numbered `seq` is written; false if it was dropped or the wait timed out.
    func waitWritten(_ seq: Int64) -> Bool
}

extension SettlementQueueing {
    /// Queues one request's settlement.
    @discardableResult
    public func enqueue(reservation: Int64?, record: ExecutionRecord) -> Int64 {
        enqueue(.request(reservation: reservation, record: record))
    }
}

/// The tenant × backend circuit breakers, shared by every worker.
public protocol CircuitBreakers: Sendable {
    func admit(tenant: String, backend: String, nowMs: Int64) throws -> CircuitDecision
    func recordProbeSuccess(tenant: String, backend: String) throws
    /// Records a failure; true when it opened the circuit.
    func recordFailure(tenant: String, backend: String, settings: CircuitSettings, wasProbe: Bool, nowMs: Int64)
        throws -> Bool
    /// Every circuit's state: (tenant, backend, open).
    func states(nowMs: Int64) throws -> [(String, String, Bool)]
}

/// The response cache, read (answers are written with their settlement: `ExecutionRecord.cacheWrite`).
public protocol ResponseCacheReads: Sendable {
    func lookup(tenant: String, key: [UInt8], nowMs: Int64) throws -> CachedAnswer?
    /// The tenant's semantic generation: it changes whenever its vectors do.
    func generation(tenant: String) throws -> Int64
    /// At most `limit` vectors of `tenant` in `scope` with `signature`.
    func vectors(tenant: String, scope: [UInt8], signature: String, limit: Int) throws -> [(
        key: [UInt8], vector: [Float], signature: String
    )]
}

/// Stored Responses API responses (`store: true`).
public protocol ResponseRepository: Sendable {
    /// Keeps a response, dropping the tenant's oldest beyond `maxStored`; refused past `storageQuota`.
    func save(_ stored: StoredResponse, tenant: String, maxStored: Int, storageQuota: Int64?) throws
    func response(tenant: String, id: String) throws -> JSONValue?
    func inputItems(tenant: String, id: String) throws -> [JSONValue]?
    /// The conversation a `previous_response_id` chain ends in (nil: unknown, or past the chain's bounds).
    func conversation(tenant: String, id: String) throws -> [JSONValue]?
    func delete(tenant: String, id: String) throws -> Bool
}

/// A tenant's document collections and their search.
public protocol DocumentRepository: Sendable {
    func collection(tenant: String, name: String) throws -> CollectionInfo?
    func collections(tenant: String) throws -> [CollectionInfo]
    func createCollection(
        tenant: String, name: String, embeddingModel: String?, settings: DocumentSettings, nowMs: Int64
    ) throws -> CollectionInfo
    func deleteCollection(tenant: String, name: String) throws -> Bool
    func documents(tenant: String, collection: String) throws -> [DocumentInfo]
    func document(tenant: String, collection: String, id: String) throws -> (DocumentInfo, String)?
    func deleteDocument(tenant: String, collection: String, id: String) throws -> Bool
    /// The stored document with the same text, if any.
    func duplicate(tenant: String, collection: CollectionInfo, of document: NewDocument) throws -> DocumentInfo?
    func add(
        _ document: NewDocument, tenant: String, collection: String, settings: DocumentSettings, nowMs: Int64,
        storageQuota: Int64?
    ) throws -> (DocumentInfo, duplicate: Bool)
    /// Every vector of the collection, streamed (a long read: on a connection kept for scans).
    func forEachVector(tenant: String, collection: CollectionInfo, _ body: (Int64, [Float]) -> Void) throws
    func chunks(tenant: String, collection: CollectionInfo, ids: [(Int64, Double)]) throws -> [FoundChunk]
    func searchBM25(tenant: String, collection: CollectionInfo, query: String, k: Int) throws -> [(Int64, FoundChunk)]
}

/// What the operator endpoints read: schema, storage, counters, workers.
public protocol OperationsReads: Sendable {
    /// The schema version of the store, and the one this build needs.
    func schemaVersion() throws -> Int
    var currentSchemaVersion: Int { get }
    /// Bytes the tenant keeps (documents, stored responses, cache).
    func storageBytes(tenant: String) throws -> Int64
    /// The deployment's counters, rendered as Prometheus text.
    func renderCounters(into renderer: inout MetricsFormat.Renderer) throws
    /// Workers that reported since then, and their requests in flight.
    func workersAlive(sinceMs: Int64) throws -> (workers: Int64, inFlight: Int64)
}

/// The storage ports the request path uses, as one value.
public struct StorePorts: Sendable {
    public let accounting: any AccountingReads
    public let circuits: any CircuitBreakers
    public let cache: any ResponseCacheReads
    public let responses: any ResponseRepository
    public let documents: any DocumentRepository
    public let operations: any OperationsReads

    public init(
        accounting: any AccountingReads, circuits: any CircuitBreakers, cache: any ResponseCacheReads,
        responses: any ResponseRepository, documents: any DocumentRepository, operations: any OperationsReads
    ) {
        self.accounting = accounting
        self.circuits = circuits
        self.cache = cache
        self.responses = responses
        self.documents = documents
        self.operations = operations
    }
}
