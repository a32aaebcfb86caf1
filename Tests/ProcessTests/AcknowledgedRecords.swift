// The journal records guests reported as acknowledged, from polls of every node's agent: what must be on disk.
import ClusterModel
import FlotillaAPI
import Guests
import Synchronization

/// The journal records guests reported as acknowledged (fsynced), kept as spans per VM and epoch.
///
/// `/v1/agent` reports per guest its last acknowledged sequence and how many records it wrote
/// since it started: the records `last - written + 1 ... last` are that epoch's, all fsynced. An
/// epoch's spans from several polls and guest restarts are contiguous (a guest continues after
/// the journal's last record), so the lowest first and highest last cover them.
final class AcknowledgedRecords: Sendable {
    private struct Key: Hashable { var vm: VMID, epoch: Epoch }
    private struct Span {
        var first: UInt64
        var last: UInt64
        var node: String
    }
    private let spans = Mutex<[Key: Span]>([:])
    /// The same VM and epoch run by two nodes: two owners, whatever the disk shows.
    private let violations = Mutex<[String]>([])

    func record(_ view: AgentView) {
        spans.withLock { spans in
            for vm in view.vms {
                guard let number = VMID(parsing: vm.id), let last = vm.journalSequence, vm.recordsWritten > 0
                else { continue }
                let key = Key(vm: number, epoch: Epoch(vm.epoch))
                let first = last - UInt64(vm.recordsWritten) + 1
                if let span = spans[key] {
                    if span.node != view.node {
                        let text =
                            "\(vm.id) epoch \(vm.epoch) was run by \(span.node) (up to seq \(span.last)) and by \(view.node) (seq \(first)...\(last))"
                        violations.withLock { $0.append(text) }
                    }
                    spans[key] = Span(first: min(span.first, first), last: max(span.last, last), node: span.node)
                } else {
                    spans[key] = Span(first: first, last: last, node: view.node)
                }
            }
        }
    }

    func acknowledged(vm: VMID) -> [JournalRecordID] {
        spans.withLock { spans in
            spans.filter { $0.key.vm == vm }.flatMap { key, span in
                (span.first...span.last).map { JournalRecordID(vm: vm, epoch: key.epoch, sequence: $0) }
            }
        }
    }

    var count: Int { spans.withLock { $0.values.reduce(0) { $0 + Int($1.last - $1.first + 1) } } }
    /// Epochs seen per VM: more than one means the VM moved or restarted under a new owner.
    var epochsSeen: Int { spans.withLock { $0.count } }
    var ownerViolations: [String] { violations.withLock { $0 } }
}
