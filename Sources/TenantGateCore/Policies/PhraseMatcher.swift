/// Whole-word phrase matching in linear time: an Aho–Corasick automaton over lowercased ASCII with every
/// run of whitespace read as one space, built once per phrase list.
public struct PhraseMatcher: Sendable {
    /// Byte → input class (0: a byte no phrase uses).
    private let classes: [UInt8]
    private let classCount: Int
    /// The automaton: `next[state * classCount + class]`.
    private let next: [Int32]
    /// The (length in collapsed bytes, tag) of the phrases ending at each state, longest first.
    private let output: [[(length: Int32, tag: Int32)]]
    /// Each state's depth: how many bytes of a phrase it has read.
    private let depth: [Int32]

    /// An automaton for `phrases` (case-insensitive; inner whitespace matches any whitespace run).
    public init(_ phrases: [String]) { self.init(tagged: phrases.map { ($0, 0) }) }

    /// An automaton for several lists at once; each match reports the tag of its phrase.
    public init(tagged phrases: [(String, Int)]) {
        let cleaned = phrases.map { (PhraseMatcher.collapse(Array($0.0.lowercased().utf8)).bytes, Int32($0.1)) }
            .filter { !$0.0.isEmpty }
        var classes = [UInt8](repeating: 0, count: 256)
        var count = 1
        for (phrase, _) in cleaned {
            for b in phrase where classes[Int(b)] == 0 {
                classes[Int(b)] = UInt8(count)
                count += 1
            }
        }
        // The trie.
        var children: [[Int32]] = [[Int32](repeating: -1, count: count)]
        var output: [[(length: Int32, tag: Int32)]] = [[]]
        var depth: [Int32] = [0]
        for (phrase, tag) in cleaned {
            var state = 0
            for b in phrase {
                let c = Int(classes[Int(b)])
                if children[state][c] < 0 {
                    children[state][c] = Int32(children.count)
                    children.append([Int32](repeating: -1, count: count))
                    output.append([])
                    depth.append(depth[state] + 1)
                }
                state = Int(children[state][c])
            }
            output[state].append((Int32(phrase.count), tag))
        }
        // Failure links, breadth first, folded into a complete transition table.
        var next = [Int32](repeating: 0, count: children.count * count)
        var fail = [Int](repeating: 0, count: children.count)
        var queue: [Int] = []
        for c in 0..<count {
            let child = children[0][c]
            if child >= 0 {
                next[c] = child
                queue.append(Int(child))
            }
        }
        var head = 0
        while head < queue.count {
            let state = queue[head]
            head += 1
            output[state] += output[fail[state]]
            for c in 0..<count {
                let child = children[state][c]
                if child >= 0 {
                    fail[Int(child)] = Int(next[fail[state] * count + c])
                    next[state * count + c] = child
                    queue.append(Int(child))
                } else {
                    next[state * count + c] = next[fail[state] * count + c]
                }
            }
        }
        self.classes = classes
        classCount = count
        self.next = next
        self.output = output.map { $0.sorted { $0.length > $1.length } }
        self.depth = depth
    }

    /// Whole-word matches in `text` (normalized bytes), as ranges of `text`.
    public func scan(_ text: [UInt8]) -> [Detection] { scanTagged(text).map(\.0) }

    /// Whole-word matches with the tag of the phrase that matched.
    func scanTagged(_ text: [UInt8]) -> [(Detection, Int)] {
        let (collapsed, origin) = PhraseMatcher.collapse(text)
        var out: [(Detection, Int)] = []
        var state = 0
        var lastEnd = -1
        for (i, raw) in collapsed.enumerated() {
            let b = raw &- 0x41 < 26 ? raw | 0x20 : raw
            state = Int(next[state * classCount + Int(classes[Int(b)])])
            guard let (length, tag) = output[state].first else { continue }
            let start = i + 1 - Int(length)
            guard start > lastEnd else { continue }
            let before = start == 0 || !Detectors.isWord(collapsed[start - 1]) || !Detectors.isWord(collapsed[start])
            let after = i + 1 == collapsed.count || !Detectors.isWord(collapsed[i + 1]) || !Detectors.isWord(raw)
            guard before && after else { continue }
            let range = origin.isEmpty ? start..<(i + 1) : Int(origin[start])..<(Int(origin[i]) + 1)
            out.append((Detection(range: range, score: 1), Int(tag)))
            lastEnd = i
        }
        return out
    }

    /// How many bytes at the end of `collapsed` are the beginning of a phrase (0: none).
    func pendingDepth(_ collapsed: [UInt8]) -> Int {
        var state = 0
        for raw in collapsed {
            let b = raw &- 0x41 < 26 ? raw | 0x20 : raw
            state = Int(next[state * classCount + Int(classes[Int(b)])])
        }
        return Int(depth[state])
    }

    /// `bytes` with every whitespace run as one space, and each kept byte's offset in `bytes` (an empty map
    /// when nothing had to change: then offsets are the same).
    static func collapse(_ bytes: [UInt8]) -> (bytes: [UInt8], origin: [Int32]) {
        var plain = true
        var previousSpace = false
        for b in bytes {
            let space = b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D
            if space && (b != 0x20 || previousSpace) {
                plain = false
                break
            }
            previousSpace = space
        }
        if plain { return (bytes, []) }
        var out: [UInt8] = []
        var origin: [Int32] = []
        out.reserveCapacity(bytes.count)
        origin.reserveCapacity(bytes.count)
        var space = false
        for (i, b) in bytes.enumerated() {
            if b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D {
                if space { continue }
                space = true
                out.append(0x20)
            } else {
                space = false
                out.append(b)
            }
            origin.append(Int32(i))
        }
        return (out, origin)
    }
}

/// The built-in injection phrase lists (lowercase; whitespace inside a phrase matches any run).
public enum PhraseLists {
    static let override = [
        "ignore previous instructions", "ignore all previous instructions", "ignore the previous instructions",
        "ignore prior instructions", "ignore all prior instructions", "ignore the above instructions",
        "ignore your instructions", "ignore all instructions", "disregard previous instructions",
        "disregard all previous instructions", "disregard the above", "disregard your instructions",
        "forget previous instructions", "forget all previous instructions", "forget your instructions",
        "forget everything above", "override your instructions", "override the system prompt",
        "new instructions:", "ignore the system prompt", "do not follow your instructions",
        "stop following your instructions", "your new instructions are",
    ]
    static let roleSwitch = [
        "you are now", "from now on you are", "pretend you are", "pretend to be", "act as if you are",
        "roleplay as", "you will now act as", "assume the role of", "you are no longer", "switch to developer mode",
        "enter developer mode", "you are in developer mode", "simulate a", "behave as",
    ]
    static let jailbreak = [
        "do anything now", "dan mode", "jailbreak", "jailbroken", "developer mode enabled", "no restrictions",
        "without any restrictions", "without restrictions", "ignore your guidelines", "ignore your safety",
        "bypass your filters", "bypass the filter", "disable your safety", "uncensored mode", "evil confidant",
        "unfiltered response", "no ethical guidelines", "break character", "opposite mode", "anti-dan",
    ]
    static let systemExtraction = [
        "reveal your system prompt", "show me your system prompt", "print your system prompt",
        "what is your system prompt", "repeat your system prompt", "output your system prompt",
        "tell me your instructions", "reveal your instructions", "print your instructions",
        "repeat the text above", "repeat everything above", "what were your initial instructions",
        "show your hidden prompt", "display your prompt", "leak your prompt", "repeat the words above",
    ]
    static let delimiter = [
        "<|im_start|>", "<|im_end|>", "<|system|>", "<|endoftext|>", "[inst]", "[/inst]", "<<sys>>", "<</sys>>",
        "### system:", "### instruction:", "</system>", "<system>", "[system]", "end of system prompt",
        "begin system prompt",
    ]

    /// The longest phrase, in bytes.
    static let longest = (override + roleSwitch + jailbreak + systemExtraction + delimiter).map(\.utf8.count).max() ?? 0

    /// The families in tag order.
    static let families: [DetectorID] = [.override, .roleSwitch, .jailbreak, .systemExtraction, .delimiter]

    /// One automaton for every family: a text is read once whichever families a rule names.
    static let all = PhraseMatcher(
        tagged: [override, roleSwitch, jailbreak, systemExtraction, delimiter].enumerated().flatMap { tag, list in
            list.map { ($0, tag) }
        })

    /// Matches of the families in `ids`.
    static func scan(_ ids: Set<DetectorID>, _ text: [UInt8]) -> [Detection] {
        all.scanTagged(text).filter { ids.contains(families[$0.1]) }.map(\.0)
    }
}
