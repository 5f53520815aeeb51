import Testing

@testable import TenantGateCore
@testable import TenantGateHTTP
import TenantGateSystem

/// The settlement queue, recording what the lease book hands it.
final class RecordingSettlements: SettlementQueueing, @unchecked Sendable {  // test-only: under `lock`
    private let lock = Locked(false)
    private var queued: [Settlement] = []

    @discardableResult
    func enqueue(_ item: Settlement) -> Int64 {
        lock.withLock { _ in
            queued.append(item)
            return Int64(queued.count)
        }
    }

    func waitWritten(_ seq: Int64) -> Bool { true }

    var items: [Settlement] { lock.withLock { _ in queued } }

    /// The retirements queued, as (tenant lease id, tokens given back, requests kept, window tokens, final).
    var retirements: [(lease: Int64, tokens: Int64, requests: Int64, windowTokens: Int64, final: Bool)] {
        items.compactMap {
            guard case .retire(let lease, let tokens, _, let requests, let windowTokens, let final) = $0 else {
                return nil
            }
            return (lease, tokens, requests, windowTokens, final)
        }
    }
}

/// The lease book's admission arithmetic: what a lease holds, what each request takes and gives back,
/// and what a retirement returns to the shared counters. Exactness rests on these numbers.
@Suite struct LeaseBookTests {
    let limits = LeaseBookTests.limits(rpm: 100)
    let need = Reservation(promptTokens: 60, completionTokens: 40, costNano: 1_000)
    let now: Int64 = 1_000_000

    /// A book with a lease for `acme` of `requests` admissions and `tokens` tokens, installed by the
    /// request that asked for it (its claim is returned).
    func leased(requests: Int, tokens: Int64, nano: Int64 = 1_000_000) throws -> (
        LeaseBook, RecordingSettlements, LeaseBook.Claim
    ) {
        let settlements = RecordingSettlements()
        let book = LeaseBook(settlements: settlements)
        guard case .fetch = book.begin(tenant: "acme", limits: limits, need: need, nowMs: now) else {
            Issue.record("a book without a lease must ask for one")
            throw LimitRefusal.rate(limit: "requests", retryAfter: 1)
        }
        let grant = LeaseGrant(requests: requests, tokens: tokens, nano: nano, admitUntilMs: now + 2000, day: "d")
        let (claim, _) = try #require(
            book.install(
                tenant: "acme", limits: limits, admission: Admission(id: 7, status: LimitStatus(), lease: grant),
                need: need))
        book.endFetch(tenant: "acme")
        return (book, settlements, claim)
    }

    static func limits(rpm: Int) -> Limits {
        Limits(
            tenant: .object([
                ("rate_limit", .object([("requests_per_minute", .int(rpm)), ("tokens_per_minute", .int(100_000))]))
            ]), global: nil)
    }

    func record(tokens: Int, status: Int = 200) -> ExecutionRecord {
        var record = ExecutionRecord(requestID: "r", atMs: now, tenant: "acme", status: status)
        record.usage = Usage(promptTokens: tokens, completionTokens: 0)
        record.costNano = Int64(tokens) * 10
        return record
    }

    @Test func requestsAreAdmittedFromTheLeaseUntilItIsUsedUp() throws {
        let (book, settlements, first) = try leased(requests: 3, tokens: 10_000)
        #expect(first.tokens == 100 && first.nano == 1_000)
        #expect(book.hasRoom(tenant: "acme", limits: limits, nowMs: now))
        var claims = [first]
        for _ in 0..<2 {
            switch book.begin(tenant: "acme", limits: limits, need: need, nowMs: now + 1) {
            case .admitted(let claim, _): claims.append(claim)
            case .admittedRenewing(let claim, _, _):
                // Low on admissions: this request would take the next lease; the store grants none here.
                claims.append(claim)
                book.endFetch(tenant: "acme")
            default: Issue.record("the lease has room")
            }
        }
        // Three admissions were granted: the fourth retires the lease and asks for another.
        guard case .fetch = book.begin(tenant: "acme", limits: limits, need: need, nowMs: now + 2) else {
            Issue.record("a used-up lease must not admit")
            return
        }
        let retired = try #require(settlements.retirements.first)
        // Its unused tokens go back at once; its window keeps the three admissions (in flight, worst case).
        #expect(retired.lease == 7 && retired.tokens == 10_000 - 300 && retired.requests == 3)
        #expect(retired.windowTokens == 300 && !retired.final)
        // The last request to settle ends it: the window keeps what was used, nothing is held any more.
        for (claim, used) in zip(claims, [50, 60, 70]) { book.settle(claim, record: record(tokens: used)) }
        let final = try #require(settlements.retirements.last)
        #expect(final.final && final.requests == 3 && final.windowTokens == 180 && final.tokens == 0)
        #expect(settlements.items.filter { if case .leased = $0 { return true } else { return false } }.count == 3)
    }

    @Test func whatASettledRequestDidNotUseGoesBackToTheLease() throws {
        let (book, settlements, claim) = try leased(requests: 100, tokens: 250)
        // The first request took its worst case (100 of 250) and used 10: 90 come back, 240 are left.
        book.settle(claim, record: record(tokens: 10))
        var admitted = 0
        admission: while true {
            switch book.begin(tenant: "acme", limits: limits, need: need, nowMs: now + 1) {
            case .admitted: admitted += 1
            case .admittedRenewing:
                admitted += 1
                book.endFetch(tenant: "acme")
            default: break admission
            }
        }
        // 240 tokens hold two more worst cases of 100, not three; then the lease is retired.
        #expect(admitted == 2)
        #expect(settlements.retirements.count == 1 && settlements.retirements.first?.tokens == 40)
    }

    @Test func aFailedRequestGivesItsAdmissionBack() throws {
        let (book, _, claim) = try leased(requests: 1, tokens: 10_000)
        // Nothing used and not answered: not counted against the per-minute limit.
        book.settle(claim, record: record(tokens: 0, status: 502))
        switch book.begin(tenant: "acme", limits: limits, need: need, nowMs: now + 1) {
        case .admitted, .admittedRenewing: break
        default: Issue.record("the admission of a failed request is the lease's again")
        }
    }

    @Test func changedLimitsOrTheEndOfTheLeaseRetireIt() throws {
        let (book, settlements, claim) = try leased(requests: 50, tokens: 10_000)
        let tighter = LeaseBookTests.limits(rpm: 10)
        #expect(!book.hasRoom(tenant: "acme", limits: tighter, nowMs: now))
        guard case .fetch = book.begin(tenant: "acme", limits: tighter, need: need, nowMs: now + 1) else {
            Issue.record("a lease taken under other limits must not admit")
            return
        }
        #expect(settlements.retirements.count == 1)
        book.endFetch(tenant: "acme")
        book.settle(claim, record: record(tokens: 20))
        #expect(settlements.retirements.last?.final == true)
        #expect(!book.hasRoom(tenant: "acme", limits: limits, nowMs: now + 3000))
    }

    @Test func aDrainedBookGivesBackEveryLeaseAndAnyThatArrivesLater() throws {
        let (book, settlements, claim) = try leased(requests: 50, tokens: 10_000)
        book.retireExpired(nowMs: now, all: true)
        #expect(settlements.retirements.count == 1)
        let late = LeaseGrant(requests: 5, tokens: 500, nano: 5_000, admitUntilMs: now + 2000, day: "d")
        let installed = book.install(
            tenant: "acme", limits: limits, admission: Admission(id: 8, status: LimitStatus(), lease: late), need: need)
        #expect(installed == nil)
        #expect(settlements.retirements.last?.lease == 8 && settlements.retirements.last?.tokens == 500)
        book.settle(claim, record: record(tokens: 30))
        #expect(settlements.retirements.contains { $0.lease == 7 && $0.final })
    }
}
