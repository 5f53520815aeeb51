import TenantGateSystem

/// Opens the store: the SQLite file at the given path (the default), or, when `TENANTGATE_DATABASE_URL`
/// is a `postgres://` (or `postgresql://`) URL, that PostgreSQL database, shared by every host that names
/// it. Every connection the gateway, the admin page and the CLI make goes through here.
public enum Database {
    /// The PostgreSQL URL, if the deployment runs on PostgreSQL.
    public static var url: String? {
        guard let url = Posix.env("TENANTGATE_DATABASE_URL"), !url.isEmpty else { return nil }
        return url
    }

    /// A new connection: to PostgreSQL when `url` is set, else to the SQLite file at `path`.
    public static func open(path: String, cacheKiB: Int = 512) throws -> any SQLConnection {
        if let url {
            guard url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") else {
                throw StoreError.invalid("TENANTGATE_DATABASE_URL must be a postgres:// URL")
            }
            return try PostgresConnection(url: url)
        }
        return try SQLiteConnection(path: path, cacheKiB: cacheKiB)
    }
}
