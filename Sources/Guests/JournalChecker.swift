// Proves from a journal on disk that no acknowledged write was lost and no two owners wrote at once.
import ClusterModel

/// Checks one VM's journal, as read from its disk file, against what its writers acknowledged.
///
/// Pure: it looks only at the parsed records and the acknowledged ids. The rules (docs/guests.md):
/// 1. **Nothing acknowledged is missing**: every acknowledged (vm, epoch, sequence) of this VM is
///    on disk, with that epoch at that sequence number.
/// 2. **One owner at a time**: epochs never go down along the file. A record of an older epoch
///    after a newer one means the old owner still wrote after the new one had started.
/// 3. **No gaps**: sequence numbers start at 1 and go up by one from record to record, carried
///    across epochs (each new owner continues where the journal ends).
public enum JournalChecker {
    /// One broken rule, said with the offsets and ids involved.
    public struct Violation: Hashable, Sendable, CustomStringConvertible {
        public enum Rule: Hashable, Sendable {
            case missingAcknowledged
            case olderEpochAfterNewer
            case sequenceGap
        }

        public var rule: Rule
        public var description: String
    }

    public static func check(
        _ journal: JournalContents, acknowledged: some Sequence<JournalRecordID> = [JournalRecordID]()
    ) -> [Violation] {
        var violations: [Violation] = []
        var previous: JournalRecord?
        for record in journal.records {
            if let previous {
                if record.epoch < previous.epoch {
                    violations.append(
                        Violation(
                            rule: .olderEpochAfterNewer,
                            description:
                                "\(journal.vm): record seq \(record.sequence) at byte \(record.offset) has epoch \(record.epoch), after seq \(previous.sequence) of epoch \(previous.epoch) at byte \(previous.offset): an older owner wrote after a newer one (two owners at once)"
                        ))
                }
                if record.sequence != previous.sequence + 1 {
                    violations.append(
                        Violation(
                            rule: .sequenceGap,
                            description:
                                "\(journal.vm): record at byte \(record.offset) has seq \(record.sequence) (epoch \(record.epoch)) after seq \(previous.sequence) (epoch \(previous.epoch)); expected seq \(previous.sequence + 1)"
                        ))
                }
            } else if record.sequence != 1 {
                violations.append(
                    Violation(
                        rule: .sequenceGap,
                        description:
                            "\(journal.vm): the first record (byte \(record.offset)) has seq \(record.sequence) (epoch \(record.epoch)); a journal starts at seq 1"
                    ))
            }
            previous = record
        }
        let onDisk = Set(journal.records.map(journal.id(of:)))
        for id in Set(acknowledged).sorted() where id.vm == journal.vm && !onDisk.contains(id) {
            let found = journal.records.filter { $0.sequence == id.sequence }
                .map { "byte \($0.offset) holds seq \($0.sequence) of epoch \($0.epoch) instead" }
            let context =
                found.isEmpty
                ? "the journal holds \(journal.records.count) records\(journal.records.last.map { ", the last seq \($0.sequence)" } ?? "")"
                : found.joined(separator: "; ")
            violations.append(
                Violation(
                    rule: .missingAcknowledged,
                    description:
                        "\(journal.vm): acknowledged record seq \(id.sequence) (epoch \(id.epoch)) is not on disk; \(context)"
                ))
        }
        return violations
    }
}
