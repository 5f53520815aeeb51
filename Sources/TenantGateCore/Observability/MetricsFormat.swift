/// Prometheus text exposition helpers.
public enum MetricsFormat {
    /// Histogram bucket bounds in seconds: quick calls and long streams alike.
    public static let buckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]

    /// The `le` label of the smallest bucket holding `seconds` (`+Inf` past the last).
    public static func bucketLabel(seconds: Double) -> String {
        for bound in buckets where seconds <= bound { return format(bound) }
        return "+Inf"
    }

    /// A number as Prometheus prints it.
    public static func format(_ value: Double) -> String {
        if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }

    /// Escapes a label value (backslash, quote, newline).
    public static func escape(_ value: String) -> String {
        var out = ""
        for ch in value {
            switch ch {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(ch)
            }
        }
        return out
    }

    /// Renders stored counters: `rows` are (name, labels, value). Histograms are stored as per-bucket
    /// counts (`<name>_bucket` with `le`), `<name>_sum_ms` and `<name>_count`, and rendered cumulative.
    public static func render(counters rows: [(String, String, Int64)], help: [String: (String, String)]) -> String {
        var byName: [String: [(String, Int64)]] = [:]
        for (name, labels, value) in rows { byName[name, default: []].append((labels, value)) }
        var out = ""
        func header(_ name: String) {
            if let (type, text) = help[name] { out += "# HELP \(name) \(text)\n# TYPE \(name) \(type)\n" }
        }
        // Plain counters.
        for name in byName.keys.sorted()
        where !name.hasSuffix("_bucket") && !name.hasSuffix("_sum_ms")
            && !(name.hasSuffix("_count") && byName[name.dropLast(6) + "_bucket"] != nil)
        {
            if name == "tenantgate_cost_nano_total" {
                header("tenantgate_cost_usd_total")
                for (labels, value) in byName[name] ?? [] {
                    out += "tenantgate_cost_usd_total{\(labels)} \(Double(value) / 1e9)\n"
                }
                continue
            }
            header(name)
            for (labels, value) in (byName[name] ?? []).sorted(by: { $0.0 < $1.0 }) {
                out += "\(name){\(labels)} \(value)\n"
            }
        }
        // Histograms.
        for bucketName in byName.keys.sorted() where bucketName.hasSuffix("_bucket") {
            let name = String(bucketName.dropLast(7))
            header(name)
            var perSeries: [String: [String: Int64]] = [:]
            for (labels, value) in byName[bucketName] ?? [] {
                guard let range = labels.ranges(of: ",le=\"").last else { continue }
                let series = String(labels[..<range.lowerBound])
                let le = String(labels[range.upperBound...].dropLast())
                perSeries[series, default: [:]][le, default: 0] += value
            }
            let sums = Dictionary(byName["\(name)_sum_ms"] ?? [], uniquingKeysWith: +)
            let counts = Dictionary(byName["\(name)_count"] ?? [], uniquingKeysWith: +)
            for series in perSeries.keys.sorted() {
                var cumulative: Int64 = 0
                for bound in buckets.map(format) + ["+Inf"] {
                    cumulative += perSeries[series]?[bound] ?? 0
                    out += "\(name)_bucket{\(series),le=\"\(bound)\"} \(cumulative)\n"
                }
                out += "\(name)_sum{\(series)} \(Double(sums[series] ?? 0) / 1000)\n"
                out += "\(name)_count{\(series)} \(counts[series] ?? cumulative)\n"
            }
        }
        return out
    }
}
