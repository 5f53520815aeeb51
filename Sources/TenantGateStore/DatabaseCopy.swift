import TenantGateSystem

/// Copies a whole store from one database to another (SQLite → PostgreSQL to move a deployment onto
/// several hosts, or back): every table in the order the migrations made them (so foreign keys hold), in
/// one write transaction on the target, which must be empty. Then it checks the result: the same rows in
/// every table, the same exported configuration, the same budget counters.
public enum DatabaseCopy {
    /// Rows copied per table, in copy order.
    public typealias Report = [(table: String, rows: Int)]

    /// The tables, in the order the migrations create them.
    public static var tables: [String] {
        Migrations.steps.flatMap { step in
            step.matches(of: #/CREATE TABLE (\w+)\(/#).map { String($0.output.1) }
        }
    }

    /// Document tables: kept on SQLite only (their search index is FTS5, made per collection); not copied.
    static let documentTables: Set<String> = ["doc_collections", "doc_documents", "doc_chunks"]

    /// Copies `source` into `target` (both migrated to this build's schema first). Refuses a target that
    /// holds anything but its new schema, and a source with document collections (unless `skipDocuments`:
    /// they are kept on SQLite only). Run it with the gateway stopped.
    public static func copy(from source: any SQLConnection, to target: any SQLConnection, skipDocuments: Bool = false)
        throws -> Report
    {
        try Migrations.migrate(source)
        try Migrations.migrate(target)
        if try !skipDocuments && count(source, "doc_collections") > 0 {
            throw StoreError.invalid(
                "the source has document collections, which are kept on SQLite only: --skip-documents leaves them")
        }
        for table in tables where try table != "meta" && count(target, table) > 0 {
            throw StoreError.invalid("the target is not empty (table \(table) has rows)")
        }
        var report: Report = []
        try target.writeTransaction {
            try target.query("DELETE FROM meta")
            for table in tables {
                if documentTables.contains(table) {
                    report.append((table, 0))
                    continue
                }
                report.append((table, try copyTable(table, from: source, to: target)))
            }
            if target.engine == .postgres {
                // Identity columns continue after the ids copied.
                for table in tables where try integerID(target, table) {
                    try target.query(
                        """
                        SELECT setval(pg_get_serial_sequence(?1, 'id'), COALESCE(MAX(id), 1), MAX(id) IS NOT NULL)
                        FROM \(table) WHERE pg_get_serial_sequence(?1, 'id') IS NOT NULL
                        """, [.text(table)])
                }
            }
        }
        try verify(source, target, report)
        return report
    }

    private static func count(_ db: any SQLConnection, _ table: String) throws -> Int64 {
        try db.query("SELECT COUNT(*) FROM \(table)").first?.first?.int ?? 0
    }

    /// The table's columns, in order (the same on both engines: `PostgresSchemaTests` checks it).
    static func columns(_ db: any SQLConnection, _ table: String) throws -> [String] {
        try columnTypes(db, table).map(\.name)
    }

    /// The table's columns and whether each is an integer.
    static func columnTypes(_ db: any SQLConnection, _ table: String) throws -> [(name: String, integer: Bool)] {
        let rows =
            db.engine == .sqlite
            ? try db.query("SELECT name, type = 'INTEGER' FROM pragma_table_info(?) ORDER BY cid", [.text(table)])
            : try db.query(
                """
                SELECT column_name::text, data_type = 'bigint' FROM information_schema.columns
                WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position
                """, [.text(table)])
        return rows.compactMap { row in row.first?.text.map { ($0, row.count > 1 && row[1].int == 1) } }
    }

    /// Whether the table's first column is an integer `id` (copied in pages by it).
    static func integerID(_ db: any SQLConnection, _ table: String) throws -> Bool {
        guard let first = try columnTypes(db, table).first else { return false }
        return first.name == "id" && first.integer
    }

    /// Copies one table in pages (by `id` where it has one, else by offset in key order); returns the rows.
    private static func copyTable(_ table: String, from source: any SQLConnection, to target: any SQLConnection)
        throws -> Int
    {
        let columns = try columns(source, table)
        guard !columns.isEmpty else { return 0 }
        let list = columns.map { "\"\($0)\"" }.joined(separator: ", ")
        let page = max(1, 4000 / columns.count)
        let byID = try integerID(source, table)
        var copied = 0
        var lastID: Int64 = .min
        while true {
            let rows =
                byID
                ? try source.query(
                    "SELECT \(list) FROM \(table) WHERE id > ? ORDER BY id LIMIT ?", [.int(lastID), .int(Int64(page))])
                : try source.query(
                    "SELECT \(list) FROM \(table) ORDER BY \(list) LIMIT ? OFFSET ?",
                    [.int(Int64(page)), .int(Int64(copied))])
            if rows.isEmpty { break }
            let one = "(" + Array(repeating: "?", count: columns.count).joined(separator: ", ") + ")"
            try target.query(
                "INSERT INTO \(table)(\(list)) VALUES "
                    + Array(repeating: one, count: rows.count).joined(separator: ", "),
                rows.flatMap { $0 })
            copied += rows.count
            if byID {
                guard let next = rows.last?.first?.int, next > lastID else { break }
                lastID = next
            }
            if rows.count < page { break }
        }
        return copied
    }

    /// The same rows in every table copied, the same configuration and the same budget counters.
    private static func verify(_ source: any SQLConnection, _ target: any SQLConnection, _ report: Report) throws {
        for (table, rows) in report where !documentTables.contains(table) || rows > 0 {
            let (from, to) = (try count(source, table), try count(target, table))
            guard from == to, table == "meta" || to == rows else {
                throw StoreError.invalid("copy check: \(table) has \(from) rows in the source, \(to) in the target")
            }
        }
        guard try ConfigStore(source).loadState().document() == ConfigStore(target).loadState().document() else {
            throw StoreError.invalid("copy check: the exported configurations differ")
        }
        let sums = "SELECT COALESCE(SUM(used_tokens), 0), COALESCE(SUM(used_nano), 0) FROM budget_counters"
        guard try source.query(sums) == target.query(sums) else {
            throw StoreError.invalid("copy check: the budget counters differ")
        }
    }
}
