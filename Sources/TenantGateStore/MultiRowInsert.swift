import TenantGateSystem

/// Many rows into one table in a few statements: `INSERT INTO table(columns) VALUES (…), (…), …`, and
/// with `upsert` (`(conflict columns, update)`) `ON CONFLICT(conflict) DO UPDATE SET update`, `chunk`
/// rows at a time, queued (see `SQLStatement.queue`). `update` names the incoming row `excluded`, as
/// both engines do. Upserted rows must not repeat a conflict key (one statement may not change a row
/// twice): callers sum per key first.
struct MultiRowInsert {
    let table: String
    let columns: [String]
    let upsert: (conflict: String, update: String)?
    /// Rows per statement: few enough distinct statements to keep prepared (one per size up to this).
    let chunk: Int
    /// The statement text for 1…chunk rows (made once: the instances are static, the texts are the
    /// prepared-statement cache's keys).
    private let texts: [String]

    init(table: String, columns: [String], upsert: (conflict: String, update: String)? = nil, chunk: Int = 16) {
        self.table = table
        self.columns = columns
        self.upsert = upsert
        self.chunk = max(1, chunk)
        texts = (1...max(1, chunk)).map { MultiRowInsert.text(table, columns, upsert, rows: $0) }
    }

    func write(_ db: any SQLConnection, _ rows: [[SQLValue]]) throws {
        var start = 0
        var values: [SQLValue] = []
        while start < rows.count {
            let part = rows[start..<min(start + chunk, rows.count)]
            values.removeAll(keepingCapacity: true)
            values.reserveCapacity(part.count * columns.count)
            for row in part { values.append(contentsOf: row) }
            try db.statement(sql(rows: part.count)).queue(values)
            start += part.count
        }
    }

    func sql(rows: Int) -> String {
        rows >= 1 && rows <= texts.count ? texts[rows - 1] : MultiRowInsert.text(table, columns, upsert, rows: rows)
    }

    private static func text(
        _ table: String, _ columns: [String], _ upsert: (conflict: String, update: String)?, rows: Int
    ) -> String {
        let row = "(" + Array(repeating: "?", count: columns.count).joined(separator: ", ") + ")"
        var sql = """
            INSERT INTO \(table)(\(columns.joined(separator: ", ")))
            VALUES \(Array(repeating: row, count: rows).joined(separator: ", "))
            """
        if let upsert { sql += "\nON CONFLICT(\(upsert.conflict)) DO UPDATE SET \(upsert.update)" }
        return sql
    }
}
