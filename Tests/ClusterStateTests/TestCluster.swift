// A cluster state driven command by command, checking invariants, rejections and encodings each time.
import ClusterModel
import ClusterState
import Testing

let mib: UInt64 = 1 << 20
let gib: UInt64 = 1 << 30

func addresses(_ node: UInt64) -> MemberAddresses {
    MemberAddresses(
        peer: Endpoint(host: "10.0.0.\(node)", port: 7201), client: Endpoint(host: "10.0.0.\(node)", port: 7101))
}

func memory(startup: UInt64, minimum: UInt64? = nil, maximum: UInt64? = nil) -> MemorySettings {
    MemorySettings(startup: startup, minimum: minimum ?? startup / 2, maximum: maximum ?? startup * 4)
}

/// Applies commands the way every node does, and after each one checks what must always hold:
/// the invariants (against the state before), that a rejection changed nothing, and that the
/// command and its result survive their binary forms.
struct TestCluster {
    var state = ClusterState()
    /// The proposal time of the next command; each command is proposed one second after the last.
    var now: UInt64 = 1_700_000_000_000

    @discardableResult
    mutating func apply(_ command: ClusterCommand, sourceLocation: SourceLocation = #_sourceLocation)
        -> CommandResult
    {
        now += 1000
        let envelope = CommandEnvelope(proposedAt: now, command: command)
        #expect((try? CommandEnvelope(decoding: envelope.encoded)) == envelope, sourceLocation: sourceLocation)
        let before = state
        let result = state.apply(envelope)
        #expect((try? CommandResult(decoding: result.encoded)) == result, sourceLocation: sourceLocation)
        if case .rejected = result {
            #expect(state == before, "a rejected \(command.kind) changed the state", sourceLocation: sourceLocation)
        }
        let violations = state.invariantViolations(since: before)
        #expect(violations.isEmpty, "after \(command): \(violations)", sourceLocation: sourceLocation)
        return result
    }

    /// Applies a command that must be applied, and returns what it did.
    @discardableResult
    mutating func applied(_ command: ClusterCommand, sourceLocation: SourceLocation = #_sourceLocation)
        -> CommandOutcome?
    {
        let result = apply(command, sourceLocation: sourceLocation)
        if let rejection = result.rejection {
            Issue.record("\(command.kind) was rejected: \(rejection)", sourceLocation: sourceLocation)
        }
        return result.outcome
    }

    /// Applies a command that must be rejected, and returns the rejection.
    @discardableResult
    mutating func rejected(
        _ command: ClusterCommand, _ kind: Rejection.Kind, _ mentioning: String = "",
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> Rejection? {
        let result = apply(command, sourceLocation: sourceLocation)
        guard let rejection = result.rejection else {
            Issue.record("\(command) was applied: \(result)", sourceLocation: sourceLocation)
            return nil
        }
        #expect(rejection.kind == kind, "\(rejection)", sourceLocation: sourceLocation)
        #expect(
            mentioning.isEmpty || rejection.reason.contains(mentioning), "\(rejection.reason)",
            sourceLocation: sourceLocation)
        return rejection
    }

    mutating func registerNodes(_ ids: [UInt64], usableMemory: UInt64 = 8 * gib) {
        for id in ids {
            applied(
                .registerNode(
                    NodeRegistration(id: NodeID(id), addresses: addresses(id), role: .voter, usableMemory: usableMemory)
                ))
        }
    }

    /// Three 8 GiB nodes and one volume, `csv1`, coordinated by n1.
    static func threeNodes(usableMemory: UInt64 = 8 * gib) -> TestCluster {
        var cluster = TestCluster()
        cluster.registerNodes([1, 2, 3], usableMemory: usableMemory)
        cluster.applied(.createVolume("csv1", path: "volumes/csv1", coordinator: 1))
        return cluster
    }

    /// Creates a VM with its disk on csv1 and returns its id.
    @discardableResult
    mutating func createVM(
        _ name: String, startup: UInt64 = gib, preferredOwners: [NodeID] = [], antiAffinityClass: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> VMID {
        let spec = VMSpec(
            name: name, memory: memory(startup: startup), preferredOwners: preferredOwners,
            antiAffinityClass: antiAffinityClass, disk: DiskFile(volume: "csv1", file: "\(name).disk"))
        guard case .vm(let vm) = applied(.createVM(spec), sourceLocation: sourceLocation) else { return 0 }
        return vm.id
    }

    /// Starts a VM (placed, or on `node`) and returns its owner, nil if it went pending.
    @discardableResult
    mutating func start(_ vm: VMID, on node: NodeID? = nil, sourceLocation: SourceLocation = #_sourceLocation)
        -> NodeID?
    {
        guard case .vm(let outcome) = applied(.startVM(vm, on: node), sourceLocation: sourceLocation) else {
            return nil
        }
        return outcome.owner
    }

    func vm(_ id: VMID) -> VMRecord? { state.vms[id] }
}
