// Reads and rewrites scenario scripts in the etcd "datadriven" layout: a command, `----`, its output.
import Foundation

/// One scenario file: comments and blank lines kept as they are, and commands with expected output.
struct ScenarioScript {
    enum Part {
        /// A comment or blank line, kept verbatim on rewrite.
        case text(String)
        case command(line: Int, command: String, expected: [String])
    }

    var parts: [Part] = []

    /// Parses `text`. A command is any non-blank line that does not start with `#`; it must be
    /// followed by `----` and its expected output, which ends at the next blank line.
    init(parsing text: String, name: String) throws {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var position = 0
        while position < lines.count {
            let line = lines[position]
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") {
                parts.append(.text(line))
                position += 1
                continue
            }
            let commandLine = position + 1
            position += 1
            guard position < lines.count, lines[position] == "----" else {
                throw ScenarioError("\(name):\(commandLine): command `\(line)` must be followed by a line `----`")
            }
            position += 1
            var expected: [String] = []
            while position < lines.count, !lines[position].isEmpty {
                expected.append(lines[position])
                position += 1
            }
            parts.append(.command(line: commandLine, command: line, expected: expected))
        }
        // A file ending in a newline yields one empty trailing line; the rewrite puts it back.
        if case .text("") = parts.last { parts.removeLast() }
    }

    /// The file with every command's expected output replaced by `outputs` (in command order).
    func rendered(outputs: [[String]]) -> String {
        var lines: [String] = []
        var next = 0
        for part in parts {
            switch part {
            case .text(let text):
                lines.append(text)
            case .command(_, let command, _):
                lines.append(command)
                lines.append("----")
                lines.append(contentsOf: outputs[next])
                next += 1
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

struct ScenarioError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
