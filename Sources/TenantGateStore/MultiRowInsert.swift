import TenantGateSystem

/// Many rows into one table in a few statements: `INSERT INTO table(columns) VALUES (…), (…), …`, and
/// with `upsert` (`(conflict columns, update)`) `ON CONFLICT(conflict) DO UPDATE SET update`, `chunk`
/// rows at a time, queued (see `SQLStatement.queue`). `update` names the incoming row `excluded`, as
/// both engines do. Upserted rows must not repeat a conflict key (one statement may not change a row
/// twice): callers sum per key first.
struct MultiRowInsert {
    let table: String
    let columns: [String]
    var upsert: (conflict: String, update: String)?
    /// Rows per statement: few enough distinct statements to keep prepared (one per size up to this).
    var chunk = 16

    func write(_ db: any SQLConnection, _ rows: [[SQLValue]]) throws {
        var start = 0
        while start < rows.count {
            let part = rows[start..<min(start + chunk, rows.count)]
            try db.statement(sql(rows: part.count)).queue(part.flatMap { $0 })
            start += part.count
        }
    }

    func sql(rows: Int) -> String {
        let row = "(" + Array(repeating: "?", count: columns.count).joined(separator: ", ") + ")"
        var sql = """
            INSERT INTO \(table)(\(columns.joined(separator: ", ")))
            VALUES \(Array(repeating: row, count: rows).joined(separator: ", "))
            """
        if let upsert { sql += "\nON CONFLICT(\(upsert.conflict)) DO UPDATE SET \(upsert.update)" }
        return sql
    }
}
