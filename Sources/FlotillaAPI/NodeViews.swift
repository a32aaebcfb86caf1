// What a node says about itself and the cluster's Raft state: status, settings, the agent's guests, volume access.
import ClusterModel

/// What `GET /readyz` answers, with 200 when `ready` and 503 when not: whether this node knows a
/// leader and has applied all that leader had committed at its last contact (docs/api.md).
/// Not ready, the body is also an `APIProblem` (`error` is `not_ready`), so any client reads it as one.
public struct ReadinessView: Codable, Sendable, Equatable {
    public var ready: Bool
    public var node: String
    /// Why not, for programs to match: `no_leader` or `catching_up`; nil when ready.
    public var reason: String?
    /// `not_ready` when not ready; nil when ready.
    public var error: String?
    /// For people: what the node has and what it waits for.
    public var detail: String
    public var leader: String?
    public var term: UInt64
    public var appliedIndex: UInt64
    /// The leader's commit index as of this node's last contact with it (its own on the leader; 0 with no leader).
    public var leaderCommitIndex: UInt64

    public init(
        ready: Bool, node: String, reason: String?, detail: String, leader: String?, term: UInt64,
        appliedIndex: UInt64, leaderCommitIndex: UInt64
    ) {
        self.ready = ready
        self.node = node
        self.reason = reason
        self.error = ready ? nil : Self.notReady
        self.detail = detail
        self.leader = leader
        self.term = term
        self.appliedIndex = appliedIndex
        self.leaderCommitIndex = leaderCommitIndex
    }

    /// The `error` name of a node that is not ready.
    public static let notReady = "not_ready"
}

/// What `GET /v1/status` answers: the leader's view of the cluster.
public struct StatusView: Codable, Sendable, Equatable {
    public struct Member: Codable, Sendable, Equatable {
        public var id: String
        /// `voter` or `learner`.
        public var role: String
        /// `leader`, `follower`, `probing`, `snapshot` (catching up by snapshot) or `unreachable`.
        public var state: String
        public var matchIndex: UInt64?
        public var peerAddress: String?
        public var clientAddress: String?

        public init(
            id: String, role: String, state: String, matchIndex: UInt64? = nil, peerAddress: String? = nil,
            clientAddress: String? = nil
        ) {
            self.id = id
            self.role = role
            self.state = state
            self.matchIndex = matchIndex
            self.peerAddress = peerAddress
            self.clientAddress = clientAddress
        }
    }

    public var cluster: String
    /// The node that answered.
    public var servedBy: String
    public var leader: String?
    public var term: UInt64
    public var commitIndex: UInt64
    public var appliedIndex: UInt64
    public var lastIndex: UInt64
    public var members: [Member]

    public init(
        cluster: String, servedBy: String, leader: String? = nil, term: UInt64, commitIndex: UInt64,
        appliedIndex: UInt64, lastIndex: UInt64, members: [Member]
    ) {
        self.cluster = cluster
        self.servedBy = servedBy
        self.leader = leader
        self.term = term
        self.commitIndex = commitIndex
        self.appliedIndex = appliedIndex
        self.lastIndex = lastIndex
        self.members = members
    }
}

/// A setting as the API shows it.
public struct SettingView: Codable, Sendable, Equatable {
    public var key: String
    public var value: String?
    /// The value the write replaced (on PUT and DELETE).
    public var previous: String?

    public init(
        key: String, value: String? = nil, previous: String? = nil
    ) {
        self.key = key
        self.value = value
        self.previous = previous
    }
}

/// What a node's agent runs (`GET /v1/agent`): the node's own facts, not the cluster's.
public struct AgentView: Codable, Sendable, Equatable {
    public struct VM: Codable, Sendable, Equatable {
        public var id: String
        public var name: String
        public var epoch: UInt64
        /// False only briefly, while the guest starts.
        public var running: Bool
        /// The disk file the guest's journal is in.
        public var disk: String
        /// The last acknowledged journal record's sequence number.
        public var journalSequence: UInt64?
        /// Records written since this node started the guest, and found in the journal then.
        public var recordsWritten: Int
        public var recordsReplayed: Int
        /// Pages of guest memory holding data.
        public var pagesTouched: Int
        /// The memory the guest is assigned now and what it demands (bytes).
        public var assigned: UInt64?
        public var demand: UInt64?
        /// While the guest is paused for a migration's last copy: its memory image's checksum (16
        /// hex digits), which the copy on the target must match. A running guest's changes every beat.
        public var pausedChecksum: String?
        /// Set when the guest came to this node by live migration.
        public var arrival: Arrival?

        public init(
            id: String, name: String, epoch: UInt64, running: Bool, disk: String, journalSequence: UInt64? = nil,
            recordsWritten: Int, recordsReplayed: Int, pagesTouched: Int, assigned: UInt64? = nil,
            demand: UInt64? = nil, pausedChecksum: String? = nil, arrival: Arrival? = nil
        ) {
            self.assigned = assigned
            self.demand = demand
            self.pausedChecksum = pausedChecksum
            self.arrival = arrival
            self.id = id
            self.name = name
            self.epoch = epoch
            self.running = running
            self.disk = disk
            self.journalSequence = journalSequence
            self.recordsWritten = recordsWritten
            self.recordsReplayed = recordsReplayed
            self.pagesTouched = pagesTouched
        }
    }

    /// How a guest that came by live migration started here: the migration, and its memory image's
    /// checksum as the source paused it (sent with the device state) and as the copy arrived here
    /// (computed here before the guest ran). The target takes the copy only when the two agree.
    /// A real guest's (QEMU's own stream, which QEMU checks as it loads it) has no checksums.
    public struct Arrival: Codable, Sendable, Equatable {
        public var migration: String
        public var sourceChecksum: String?
        public var imageChecksum: String?

        public init(migration: String, sourceChecksum: String?, imageChecksum: String?) {
            self.migration = migration
            self.sourceChecksum = sourceChecksum
            self.imageChecksum = imageChecksum
        }
    }

    public struct Problem: Codable, Sendable, Equatable {
        public var id: String
        public var name: String
        public var epoch: UInt64
        public var error: String

        public init(
            id: String, name: String, epoch: UInt64, error: String
        ) {
            self.id = id
            self.name = name
            self.epoch = epoch
            self.error = error
        }
    }

    /// What this node runs QEMU guests with, found when it started its first one.
    public struct QEMU: Codable, Sendable, Equatable {
        /// `kvm` or `tcg` (software emulation).
        public var accelerator: String
        /// Why: KVM only where a kernel booted under it.
        public var reason: String

        public init(accelerator: String, reason: String) {
            self.accelerator = accelerator
            self.reason = reason
        }
    }

    public var node: String
    /// Why the node is fenced (running nothing), or nil.
    public var fenced: String?
    public var vms: [VM]
    /// VMs this node owns but does not run, and why.
    public var problems: [Problem]
    /// Set once this node has started a QEMU guest.
    public var qemu: QEMU?

    public init(
        node: String, fenced: String? = nil, vms: [VM], problems: [Problem], qemu: QEMU? = nil
    ) {
        self.qemu = qemu
        self.node = node
        self.fenced = fenced
        self.vms = vms
        self.problems = problems
    }
}

/// One node's facts about volumes: soft state, never in the log.
public struct VolumeAccessView: Codable, Sendable, Equatable {
    public var node: String
    /// Volumes whose direct path is broken on this node: its I/O to them goes through the coordinator.
    public var redirected: [String]
    /// Volumes this node coordinates and serves now.
    public var coordinating: [String]
    /// Volumes this node should coordinate but refuses to, and why (their metadata failed validation).
    public var refused: [String: String]
    /// Journal records this node appended as coordinator for nodes whose direct path is broken, by volume.
    public var redirectedAppends: [String: Int]

    public init(
        node: String, redirected: [String], coordinating: [String], refused: [String: String],
        redirectedAppends: [String: Int]
    ) {
        self.node = node
        self.redirected = redirected
        self.coordinating = coordinating
        self.refused = refused
        self.redirectedAppends = redirectedAppends
    }
}

/// The body of every error answer: `{"error": "no_leader", "detail": "…"}`.
///
/// `error` is a short name, lower-case words joined by underscores, that a program may match
/// (docs/api.md lists them); `detail` says what happened and what to do, for people.
public struct APIProblem: Codable, Sendable, Equatable {
    public var error: String
    public var detail: String

    public init(error: String, detail: String) {
        self.error = error
        self.detail = detail
    }

    /// No leader took the request: it certainly had no effect, and may be sent again.
    public static let noLeader = "no_leader"
}

/// A piece of a real guest's serial console (`GET /v1/vms/{name}/console`), answered by the node
/// that runs it. Offsets are bytes into the console of the guest it runs now (a new epoch or a
/// migration starts a new console at 0).
public struct ConsoleView: Codable, Sendable, Equatable {
    public var vm: String
    /// The node that runs the guest, and the epoch it runs it under.
    public var node: String
    public var epoch: UInt64
    /// The offset of `text`'s first byte, and where to ask next (`?offset=`) to follow the console.
    public var start: UInt64
    public var next: UInt64
    /// The console's size when read.
    public var size: UInt64
    /// The bytes as UTF-8 (a piece cut inside a character shows U+FFFD there).
    public var text: String

    public init(vm: String, node: String, epoch: UInt64, start: UInt64, next: UInt64, size: UInt64, text: String) {
        self.vm = vm
        self.node = node
        self.epoch = epoch
        self.start = start
        self.next = next
        self.size = size
        self.text = text
    }
}
