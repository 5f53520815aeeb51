/// Inline SVG charts (no script, no inline style: attributes only, so the CSP holds).
enum Chart {
    /// Bars of daily spend; each bar has a `<title>` (hover text and screen readers), the axis shows the
    /// first and last day and the maximum.
    static func dailySpend(_ points: [(day: String, nano: Int64)], label: String) -> HTML {
        let width = 720
        let height = 180
        let top = 16
        let bottom = 24
        let left = 4
        let plot = height - top - bottom
        let maximum = max(points.map(\.nano).max() ?? 0, 1)
        let slot = points.isEmpty ? width : (width - left) / points.count
        var bars: [HTML] = []
        for (i, point) in points.enumerated() {
            let h = Int((Double(point.nano) / Double(maximum) * Double(plot)).rounded())
            let x = left + i * slot
            bars.append(
                """
                <rect class="bar" x="\(x + 1)" y="\(top + plot - h)" width="\(max(slot - 2, 1))" height="\(max(h, point.nano > 0 ? 1 : 0))">\
                <title>\(point.day): \(Layout.usd(point.nano))</title></rect>
                """)
        }
        let first = points.first?.day ?? ""
        let last = points.last?.day ?? ""
        return """
            <figure class="chart"><svg viewBox="0 0 \(width) \(height)" role="img" aria-label="\(label)" \
            xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="none">\
            <line class="axis" x1="0" y1="\(top + plot)" x2="\(width)" y2="\(top + plot)"></line>\(bars)\
            <text class="tick" x="\(left)" y="\(height - 6)">\(first)</text>\
            <text class="tick" x="\(width - 4)" y="\(height - 6)" text-anchor="end">\(last)</text>\
            <text class="tick" x="\(left)" y="12">max \(Layout.usd(maximum == 1 ? 0 : maximum))</text></svg>\
            <figcaption>\(label)</figcaption></figure>
            """
    }
}
