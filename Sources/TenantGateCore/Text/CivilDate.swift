/// Calendar arithmetic for UTC timestamps, without Foundation.
public enum CivilDate {
    /// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
    public static func from(days: Int) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    /// `YYYY-MM-DD` for a Unix time in seconds.
    public static func isoDate(epochSeconds: Int64) -> String {
        let (y, m, d) = from(days: Int(epochSeconds / 86_400))
        return "\(y)-\(two(m))-\(two(d))"
    }

    /// `YYYY-MM` for a Unix time in seconds.
    public static func isoMonth(epochSeconds: Int64) -> String {
        let (y, m, _) = from(days: Int(epochSeconds / 86_400))
        return "\(y)-\(two(m))"
    }

    /// `YYYY-MM-DD HH:MM:SS` (UTC) for epoch milliseconds, for people.
    public static func dateTime(epochMs: Int64) -> String {
        let seconds = epochMs / 1000
        return isoDate(epochSeconds: seconds) + " " + clock(Int(seconds % 86_400))
    }

    /// RFC 3339 UTC with milliseconds (`2026-11-22T14:03:07.120Z`) for epoch microseconds, for logs.
    public static func rfc3339(epochMicros: Int64) -> String {
        let seconds = epochMicros / 1_000_000
        let millis = Int((epochMicros / 1000) % 1000)
        let ms = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return isoDate(epochSeconds: seconds) + "T" + clock(Int(seconds % 86_400)) + ".\(ms)Z"
    }

    private static func clock(_ secondOfDay: Int) -> String {
        "\(two(secondOfDay / 3600)):\(two(secondOfDay / 60 % 60)):\(two(secondOfDay % 60))"
    }

    private static func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
}
