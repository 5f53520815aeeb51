/// Prometheus text exposition helpers.
public enum MetricsFormat {
    /// Histogram bucket bounds in seconds: quick calls and long streams alike.
    public static let buckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
    /// The `le` labels, `+Inf` last.
    public static let bucketLabels: [String] = buckets.map(format) + ["+Inf"]

    /// The index into `bucketLabels` of the smallest bucket holding `seconds`.
    public static func bucketIndex(seconds: Double) -> Int {
        buckets.firstIndex(where: { seconds <= $0 }) ?? buckets.count
    }

    /// A number as Prometheus prints it.
    public static func format(_ value: Double) -> String {
        if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }

    /// Escapes a label value (backslash, quote, newline).
    public static func escape(_ value: String) -> String {
        guard value.utf8.contains(where: { $0 == 0x5C || $0 == 0x22 || $0 == 0x0A }) else { return value }
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

    /// Renders rows given in (name, labels, le) order in one pass into a byte buffer. Histograms are
    /// stored as `<h>_bucket` rows with a bucket index `le` and non-cumulative counts, `<h>_sum_ms` and
    /// `<h>_count`; they come out cumulative, with every bound. Other counters have `le` -1.
    public struct Renderer {
        /// The rendered text so far.
        public private(set) var out: [UInt8] = []
        private let help: [String: (String, String)]
        private var family = ""
        private var histogram: String?
        private var seriesLabels: [UInt8] = []
        private var counts = [Int64](repeating: 0, count: MetricsFormat.bucketLabels.count)
        private static let leBytes = MetricsFormat.bucketLabels.map { Array(",le=\"\($0)\"} ".utf8) }

        /// Creates a renderer with `# HELP`/`# TYPE` texts by family name.
        public init(help: [String: (String, String)], capacity: Int = 4096) {
            self.help = help
            out.reserveCapacity(capacity)
        }

        private mutating func header(_ name: String) {
            guard name != family else { return }
            family = name
            if let (type, text) = help[name] {
                out.append(contentsOf: "# HELP \(name) \(text)\n# TYPE \(name) \(type)\n".utf8)
            }
        }

        private mutating func line(_ name: String, _ labels: [UInt8], _ value: String) {
            out.append(contentsOf: name.utf8)
            out.append(UInt8(ascii: "{"))
            out.append(contentsOf: labels)
            out.append(contentsOf: "} ".utf8)
            out.append(contentsOf: value.utf8)
            out.append(0x0A)
        }

        private mutating func flushHistogram() {
            guard let name = histogram else { return }
            var cumulative: Int64 = 0
            for index in counts.indices {
                cumulative += counts[index]
                out.append(contentsOf: name.utf8)
                out.append(contentsOf: "_bucket{".utf8)
                out.append(contentsOf: seriesLabels)
                out.append(contentsOf: Renderer.leBytes[index])
                out.append(contentsOf: String(cumulative).utf8)
                out.append(0x0A)
                counts[index] = 0
            }
            histogram = nil
        }

        /// Adds one stored row.
        public mutating func add(name: String, labels: [UInt8], le: Int, value: Int64) {
            if name.hasSuffix("_bucket") {
                let base = String(name.dropLast(7))
                if histogram != base || seriesLabels != labels {
                    flushHistogram()
                    header(base)
                    histogram = base
                    seriesLabels = labels
                }
                if le >= 0 && le < counts.count { counts[le] += value }
                return
            }
            flushHistogram()
            if name.hasSuffix("_sum_ms") {
                line(String(name.dropLast(3)), labels, String(Double(value) / 1000))
            } else if name.hasSuffix("_nano_total") {
                // Money is counted in nano-USD and shown in USD.
                let usd = String(name.dropLast("_nano_total".count)) + "_usd_total"
                header(usd)
                line(usd, labels, String(Double(value) / 1e9))
            } else {
                if !(name.hasSuffix("_count") && help[String(name.dropLast(6))] != nil) { header(name) }
                line(name, labels, String(value))
            }
        }

        /// Appends raw text (gauges rendered elsewhere) after the stored rows.
        public mutating func append(_ text: String) {
            flushHistogram()
            out.append(contentsOf: text.utf8)
        }

        /// The finished text.
        public mutating func finish() -> [UInt8] {
            flushHistogram()
            return out
        }
    }
}
