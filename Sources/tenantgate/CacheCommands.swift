import ArgumentParser
import TenantGateCore
import TenantGateHTTP
import TenantGateStore
import TenantGateSystem

struct CacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache", abstract: "The response cache: figures per tenant, and purging.",
        subcommands: [Stats.self, Purge.self, Bench.self])

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Entries, bytes and hits per tenant; hit rate and saved USD over the last 24 hours.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var only: TenantChoice
        @Flag var json = false

        func run() throws {
            try reporting {
                let db = try global.open()
                let tenant = try only.resolve(db, required: false)
                let rows = try CacheStore(db).stats(tenant: tenant, nowMs: Posix.wallMicros() / 1000)
                func rate(_ row: CacheStats) -> Double {
                    let lookups = row.recentHits + row.recentMisses
                    return lookups == 0 ? 0 : Double(row.recentHits) / Double(lookups)
                }
                if json {
                    print(
                        JSONValue.array(
                            rows.map { row in
                                .object([
                                    ("tenant", .string(row.tenant)), ("entries", .int(Int(row.entries))),
                                    ("bytes", .int(Int(row.bytes))), ("hits", .int(Int(row.hits))),
                                    ("hits_24h", .int(Int(row.recentHits))),
                                    ("misses_24h", .int(Int(row.recentMisses))),
                                    ("hit_rate_24h", .number(String(rate(row)))),
                                    ("saved_usd_24h", .number(Money.usdString(nano: row.savedNano))),
                                ])
                            }
                        ).jsonString)
                } else {
                    print("tenant\tentries\tbytes\thits\thit_rate_24h\tsaved_usd_24h")
                    for row in rows {
                        print(
                            "\(row.tenant)\t\(row.entries)\t\(row.bytes)\t\(row.hits)\t\(Int(rate(row) * 100))%\t"
                                + Money.display(nano: row.savedNano))
                    }
                }
            }
        }
    }

    struct Purge: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete cached answers (one tenant's, or all); every worker misses from then on.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var only: TenantChoice
        @Flag var json = false

        func run() throws {
            try reporting {
                let db = try global.open()
                let n = try CacheStore(db).purge(tenant: try only.resolve(db, required: false))
                if json { return print(JSONValue.object([("purged", .int(n))]).jsonString) }
                print("purged \(n) cached answer(s)")
            }
        }
    }

    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Semantic lookup: comparing a question with 1k, 10k, 20k and 50k cached 1536-d vectors that all share its signature (the worst case; one core)."
        )

        func run() throws {
            for count in [1_000, 10_000, 20_000, 50_000] {
                let ms = GuardrailTools.semanticScanMs(count: count)
                print("\(count) entries\t\(Double((ms * 100).rounded()) / 100) ms")
            }
        }
    }
}
