// What the CLI prints: aligned tables of nodes, VMs, volumes and migrations, and one-line errors.
import ClusterModel
public import FlotillaAPI
import Foundation

/// Aligned text tables: columns padded to their widest cell, two spaces apart, no trailing spaces.
public enum TextTable {
    public static func render(header: [String], rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.map { line in String(line.reversed().drop { $0 == " " }.reversed()) }.joined(separator: "\n")
    }
}

/// Renders API answers for people. Pure: the same answer always prints the same text.
public enum ClusterText {
    /// `flotilla status`: a headline, then nodes, VMs, volumes and running migrations.
    public static func status(_ cluster: ClusterView) -> String {
        let headline =
            "cluster \(cluster.cluster) · leader \(cluster.leader ?? "none") · term \(cluster.term) · "
            + "commit \(cluster.commitIndex) · applied \(cluster.appliedIndex) · served by \(cluster.servedBy)"
        let raft = Dictionary(cluster.members.map { ($0.id, $0.state) }, uniquingKeysWith: { first, _ in first })
        return [
            headline,
            "NODES\n" + nodes(cluster.nodes, raft: raft),
            "VMS\n" + vms(cluster.vms),
            "VOLUMES\n" + volumes(cluster.volumes),
            "MIGRATIONS\n" + migrations(cluster.migrations),
        ].joined(separator: "\n\n")
    }

    /// `raft` gives each node's Raft state (leader, follower, …) when known. RESERVED is the startup
    /// memory its VMs are admitted with; ASSIGNED what it has given them now, by its last report.
    public static func nodes(_ nodes: [NodeView], raft: [String: String] = [:]) -> String {
        guard !nodes.isEmpty else { return "(no nodes registered yet)" }
        return TextTable.render(
            header: ["ID", "STATE", "RAFT", "RESERVED", "ASSIGNED/USABLE", "VMS", "CLIENT"],
            rows: nodes.map { node in
                [
                    node.id, node.state, raft[node.id] ?? node.role, ByteCount(node.reservedMemory).compact,
                    "\(node.memory.map { ByteCount($0.assigned).compact } ?? "-")/\(ByteCount(node.usableMemory).compact)",
                    String(node.vms.count), node.clientAddress,
                ]
            })
    }

    public static func vms(_ vms: [VMView]) -> String {
        guard !vms.isEmpty else { return "(no VMs)" }
        return TextTable.render(
            header: [
                "NAME", "ID", "STATE", "OWNER", "STARTUP", "MIN", "MAX", "ASSIGNED", "DEMAND", "STATUS", "EPOCH",
                "NOTE",
            ],
            rows: vms.map { vm in
                let paging = vm.memory.pagingBytes.flatMap { $0 > 0 ? "pages \(ByteCount($0).compact)" : nil }
                return [
                    vm.name, vm.id, vm.state, vm.owner ?? "-", ByteCount(vm.memory.startup).compact,
                    ByteCount(vm.memory.minimum).compact, ByteCount(vm.memory.maximum).compact,
                    vm.memory.assigned.map { ByteCount($0).compact } ?? "-",
                    vm.memory.demand.map { ByteCount($0).compact } ?? "-", vm.memory.status ?? "-", String(vm.epoch),
                    vm.pendingReason ?? vm.migration.map { "migrating (\($0))" } ?? paging ?? "",
                ]
            })
    }

    public static func volumes(_ volumes: [VolumeView]) -> String {
        guard !volumes.isEmpty else { return "(no volumes)" }
        let table = TextTable.render(
            header: ["ID", "STATE", "COORDINATOR", "PATH", "VMS"],
            rows: volumes.map { [$0.id, $0.state, $0.coordinator, $0.path, String($0.vms.count)] })
        // The nodes' own facts, when the API gathered them: said only when something is off.
        var notes: [String] = []
        for volume in volumes {
            if let redirected = volume.redirected, !redirected.isEmpty {
                notes.append(
                    "\(volume.id): redirected I/O through \(volume.coordinator) for "
                        + redirected.joined(separator: ", "))
            }
            if let problem = volume.coordinatorProblem {
                notes.append("\(volume.id): \(volume.coordinator) refuses to coordinate it: \(problem)")
            }
            if let unknown = volume.accessUnknown, !unknown.isEmpty {
                notes.append("\(volume.id): no answer from \(unknown.joined(separator: ", ")) about their access")
            }
        }
        return ([table] + notes).joined(separator: "\n")
    }

    public static func migrations(_ migrations: [MigrationView]) -> String {
        guard !migrations.isEmpty else { return "(none running)" }
        return TextTable.render(
            header: ["ID", "VM", "SOURCE", "TARGET", "PHASE", "REASON"],
            rows: migrations.map { migration in
                [
                    migration.id, migration.vmName ?? migration.vm, migration.source, migration.target,
                    migration.phase, migration.reason ?? "",
                ]
            })
    }

    /// One event per line: sequence, UTC time, kind, detail.
    public static func event(_ event: EventView) -> String {
        let date = Date(timeIntervalSince1970: Double(event.time) / 1000)
        var format = Date.ISO8601FormatStyle(includingFractionalSeconds: false)
        format.timeZone = TimeZone(identifier: "UTC")!
        // Lines stream one by one (`--follow`), so columns get fixed widths rather than measured ones.
        let sequence = String(event.sequence)
        let kind = event.kind.padding(toLength: max(19, event.kind.count), withPad: " ", startingAt: 0)
        return String(repeating: " ", count: max(0, 6 - sequence.count)) + sequence
            + "  \(date.formatted(format))  \(kind)  \(event.detail)"
    }

    /// The line an error ends a command with: what failed and why, on one line.
    public static func errorLine(_ message: String) -> String {
        let oneLine = message.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }.joined(separator: " ")
        return "flotilla: \(oneLine)"
    }
}
