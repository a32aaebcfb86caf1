// A running simulated VM: its memory, its activity and the task that writes its disk journal.
public import ClusterModel

/// What a guest is and where its disk is.
public struct GuestConfiguration: Sendable {
    public var vm: VMID
    /// The journal file: `<shared root>/<volume path>/<disk file>`.
    public var diskPath: String
    /// The memory it starts with (its startup memory, or what the balancer assigned).
    public var memoryBytes: UInt64
    /// What it does with memory (from the VM's replicated spec).
    public var workload: Workload
    /// How often the guest appends a journal record (and advances its activity).
    public var journalInterval: Duration
    /// Seeds the activity's generator; the same seed writes the same pages.
    public var seed: UInt64
    /// The way through the volume's coordinator, for when this node's direct path is broken;
    /// nil: the guest always writes its disk file itself.
    public var redirect: (any JournalRedirect)?
    /// What the workload's time and the journal's beat are measured by.
    public var clock: NodeClock

    public init(
        vm: VMID, diskPath: String, memoryBytes: UInt64, workload: Workload,
        journalInterval: Duration = .milliseconds(100), seed: UInt64, redirect: (any JournalRedirect)? = nil,
        clock: NodeClock = NodeClock(ContinuousClock())
    ) {
        self.vm = vm
        self.diskPath = diskPath
        self.memoryBytes = memoryBytes
        self.workload = workload
        self.journalInterval = journalInterval
        self.seed = seed
        self.redirect = redirect
        self.clock = clock
    }
}

/// What a guest reports about itself.
public struct GuestStatus: Hashable, Sendable {
    public var vm: VMID
    public var running: Bool
    /// The epoch it runs (or last ran) under.
    public var epoch: Epoch?
    /// The last acknowledged (fsynced) record's sequence number, or nil before the first.
    public var lastSequence: UInt64?
    /// Records acknowledged since the guest last started.
    public var recordsWritten: Int
    /// Records found in the journal when it last started, and torn tail bytes cut off.
    public var recordsReplayed: Int
    public var tornBytesTruncated: Int
    /// Pages of its memory holding data.
    public var residentPages: Int
    /// What it is assigned now, and what it demands (its workload's demand at its present time).
    public var assignedBytes: UInt64
    public var demandBytes: UInt64
    /// Why the guest stopped on its own (its disk failed), if it did.
    public var failure: String?

    public init(
        vm: VMID, running: Bool, epoch: Epoch?, lastSequence: UInt64? = nil, recordsWritten: Int = 0,
        recordsReplayed: Int = 0, tornBytesTruncated: Int = 0, residentPages: Int = 0, assignedBytes: UInt64,
        demandBytes: UInt64, failure: String? = nil
    ) {
        self.vm = vm
        self.running = running
        self.epoch = epoch
        self.lastSequence = lastSequence
        self.recordsWritten = recordsWritten
        self.recordsReplayed = recordsReplayed
        self.tornBytesTruncated = tornBytesTruncated
        self.residentPages = residentPages
        self.assignedBytes = assignedBytes
        self.demandBytes = demandBytes
        self.failure = failure
    }
}

/// A simulated VM: `start(epoch:)` replays its journal and runs it; `stop()` ends it.
///
/// While running, one task advances the workload and appends a journal record every
/// `journalInterval`. Each record's payload is the number of pages written since the last record
/// and the pages resident (8 bytes each, little-endian). A journal write that fails stops the
/// guest, as a disk error crashes a VM; `status.failure` says why.
///
/// Fencing: `stop()` closes the journal before it returns, so once it returns this guest writes
/// nothing more, and the journal refuses to open under an epoch older than one already in it.
///
/// Live migration: `pause()` stops it and closes its journal but keeps its memory; `resume()`
/// reopens the journal (refused if another owner wrote a newer epoch meanwhile) and runs on. The
/// source reads its pages (`beginCopy()`, `takeDirtyPages()`) and throttles its dirtying; the
/// target makes a guest from the copied memory and activity (`init(configuration:migrated:)`).
public actor Guest {
    public nonisolated let configuration: GuestConfiguration
    private let onAcknowledged: (@Sendable (JournalRecordID) -> Void)?

    /// How the guest reaches its journal now.
    private enum DiskPath {
        /// Its own descriptor on the disk file.
        case direct(DiskJournal)
        /// Through the volume's coordinator; the guest keeps the sequence its next record gets.
        case redirected(nextSequence: UInt64)
    }

    private enum State {
        case stopped
        case running(epoch: Epoch, disk: DiskPath, loop: Task<Void, Never>)
        /// Paused for a migration's last copy: no beat, the journal closed, the memory kept.
        case paused(epoch: Epoch)
    }

    private var state = State.stopped
    /// Set by `stop()`: a stopped guest never starts again, so a `stop()` that overtakes a
    /// `start(epoch:)` still wins. A VM started again is a new `Guest` (memory does not survive a stop).
    private var ended = false
    /// Set while `start` waits for the coordinator, so a second `start` does not run it twice.
    private var starting = false
    private var memory: GuestMemory
    private var activity: GuestActivity
    private var generator: SeededGenerator
    /// When it last started, on `configuration.clock`.
    private var started = Duration.zero
    private var lastEpoch: Epoch?
    private var lastSequence: UInt64?
    private var recordsWritten = 0
    /// Pages written since the last record (its payload counts them).
    private var unrecordedWrites = 0
    private var recordsReplayed = 0
    private var tornBytesTruncated = 0
    private var failure: String?

    /// `onAcknowledged` is called with each record's id once it is on disk (for checking histories).
    public init(configuration: GuestConfiguration, onAcknowledged: (@Sendable (JournalRecordID) -> Void)? = nil) {
        self.init(configuration: configuration, memory: nil, activity: nil, onAcknowledged: onAcknowledged)
    }

    /// A guest that continues another node's after a migration: its memory image and activity
    /// as copied. `start(epoch:)` then runs it under the new owner's epoch.
    public init(
        configuration: GuestConfiguration, migrated memory: GuestMemory, activity: GuestActivity,
        onAcknowledged: (@Sendable (JournalRecordID) -> Void)? = nil
    ) {
        self.init(configuration: configuration, memory: memory, activity: activity, onAcknowledged: onAcknowledged)
    }

    private init(
        configuration: GuestConfiguration, memory: GuestMemory?, activity: GuestActivity?,
        onAcknowledged: (@Sendable (JournalRecordID) -> Void)?
    ) {
        self.configuration = configuration
        self.onAcknowledged = onAcknowledged
        self.memory = memory ?? GuestMemory(bytes: configuration.memoryBytes)
        self.activity = activity ?? GuestActivity(workload: configuration.workload)
        self.generator = SeededGenerator(seed: configuration.seed)
    }

    /// Opens and replays the journal, then runs the guest under `epoch` (the committed one).
    ///
    /// Throws when the journal is damaged or already holds a newer epoch; the guest then stays
    /// stopped. Does nothing on a guest that runs or was stopped. With the direct path broken,
    /// the journal is opened through the coordinator.
    public func start(epoch: Epoch) async throws(JournalError) {
        guard case .stopped = state, !ended, !starting else { return }
        let disk: DiskPath
        let position: JournalPosition
        if let redirect = configuration.redirect, redirect.isRedirected() {
            starting = true
            defer { starting = false }
            position = try await redirect.open(vm: configuration.vm, epoch: epoch)
            // A stop that came in while the coordinator answered wins.
            guard !ended else { return }
            disk = .redirected(nextSequence: position.nextSequence)
        } else {
            let journal = try DiskJournal.open(path: configuration.diskPath, vm: configuration.vm, epoch: epoch)
            position = JournalPosition(journal)
            disk = .direct(journal)
        }
        recordsReplayed = position.recordsReplayed
        tornBytesTruncated = position.tornBytes
        lastSequence = position.nextSequence > 1 ? position.nextSequence - 1 : nil
        lastEpoch = epoch
        recordsWritten = 0
        failure = nil
        let clock = configuration.clock
        // Its time goes on from where its activity is: zero for a guest that boots, further for
        // one resumed or continued after a migration.
        started = clock.now - activity.elapsed
        let interval = configuration.journalInterval
        let loop = Task { [weak self] in
            var next = clock.now + interval
            while !Task.isCancelled {
                do { try await clock.sleep(until: next) } catch { return }
                guard let self, await self.step() else { return }
                next += interval
                // A guest that fell behind (a slow disk) does not burst to catch up.
                if next < clock.now { next = clock.now + interval }
            }
        }
        state = .running(epoch: epoch, disk: disk, loop: loop)
    }

    /// Stops the guest: no journal write happens after this returns.
    public func stop() async {
        ended = true
        if case .paused = state {
            state = .stopped
            return
        }
        guard case .running(_, let disk, let loop) = state else { return }
        // Synchronous up to here: a direct journal closes between records. A redirected append
        // in flight is awaited below (the loop runs it), so it too is over when this returns.
        state = .stopped
        if case .direct(let journal) = disk { journal.close() }
        loop.cancel()
        await loop.value
    }

    /// Pauses a running guest for a migration's last copy: once this returns it writes neither
    /// memory nor journal; its memory stays as it is.
    public func pause() async {
        guard case .running(let epoch, let disk, let loop) = state else { return }
        catchUp()
        state = .paused(epoch: epoch)
        if case .direct(let journal) = disk { journal.close() }
        loop.cancel()
        await loop.value
    }

    /// Runs a paused guest again under its epoch (the migration did not switch over): reopens its
    /// journal, which refuses if another owner has written a newer epoch — then the guest stays
    /// stopped and the error says why.
    public func resume() async throws(JournalError) {
        guard case .paused(let epoch) = state, !ended else { return }
        state = .stopped
        try await start(epoch: epoch)
    }

    public var isPaused: Bool {
        if case .paused = state { return true }
        return false
    }

    /// Starts a migration's copy: every page holding data (the first round), and a new dirty set.
    public func beginCopy() -> [(page: Int, word: UInt64)] {
        catchUp()
        _ = memory.collectDirtyPages()
        var pages: [(page: Int, word: UInt64)] = []
        pages.reserveCapacity(memory.residentPages)
        for page in 0..<memory.pageCount {
            let word = memory.word(page)
            if word != 0 { pages.append((page, word)) }
        }
        return pages
    }

    /// The pages written since the last call (or `beginCopy()`), as they are now: a page freed
    /// since holds word 0 and must be sent as zeros too.
    public func takeDirtyPages() -> [(page: Int, word: UInt64)] {
        catchUp()
        return memory.collectDirtyPages().map { ($0, memory.word($0)) }
    }

    /// Pages written since the last `takeDirtyPages()`, without taking them.
    public var dirtyPageCount: Int {
        catchUp()
        return memory.dirtyPageCount
    }

    /// Takes away `percent` of the guest's dirtying (a migration's auto-converge); 0 lifts it.
    public func throttle(percent: Int) {
        catchUp()
        activity.throttlePercent = min(max(percent, 0), 99)
    }

    /// Makes the writes a running guest owes up to now, between its beats: a migration reading its
    /// dirty pages sees the writes of every moment, not only those of the last journal beat (which
    /// would make a round that falls between two beats look clean). The next record counts them.
    private func catchUp() {
        guard case .running = state else { return }
        unrecordedWrites += activity.advance(
            to: configuration.clock.now - started, memory: &memory, using: &generator)
    }

    /// What a migration's target needs besides the pages: the activity where it is (a paused
    /// guest's is final), its memory's size and checksum.
    public var migrationState: (activity: GuestActivity, memoryBytes: UInt64, checksum: UInt64) {
        (activity, memory.bytes, memory.checksum)
    }

    public var status: GuestStatus {
        var running = false
        if case .running = state { running = true }
        return GuestStatus(
            vm: configuration.vm, running: running, epoch: lastEpoch, lastSequence: lastSequence,
            recordsWritten: recordsWritten, recordsReplayed: recordsReplayed, tornBytesTruncated: tornBytesTruncated,
            residentPages: memory.residentPages, assignedBytes: memory.bytes, demandBytes: demand, failure: failure)
    }

    /// The whole memory image's checksum.
    public var memoryChecksum: UInt64 { memory.checksum }

    /// What the guest demands now: its workload's demand at its present time.
    public var demand: UInt64 {
        guard case .running = state else { return activity.demand }
        return activity.workload.demand(at: configuration.clock.now - started)
    }

    /// The memory the guest is assigned: more pages at once (hot-add) or fewer (balloon: the pages
    /// cut away are given up with what they held, and the guest holds no page beyond them).
    public func assign(bytes: UInt64) {
        memory.resize(bytes: bytes)
        activity.memoryResized(memory)
    }

    /// The VM's workload changed: the guest follows it from its next beat, at its present time.
    public func follow(_ workload: Workload) {
        activity.workload = workload
    }

    /// One beat: the workload runs up to now, then a record is appended. False ends the loop.
    private func step() async -> Bool {
        guard case .running(let epoch, let disk, let loop) = state else { return false }
        catchUp()
        let written = unrecordedWrites
        unrecordedWrites = 0
        var payload: [UInt8] = []
        withUnsafeBytes(of: UInt64(written).littleEndian) { payload += $0 }
        withUnsafeBytes(of: UInt64(memory.residentPages).littleEndian) { payload += $0 }
        do throws(JournalError) {
            if let redirect = configuration.redirect, redirect.isRedirected() {
                let sequence: UInt64
                switch disk {
                case .direct(let journal):
                    // The direct path broke: close it; the coordinator continues the sequence.
                    sequence = journal.nextSequence
                    journal.close()
                case .redirected(let next): sequence = next
                }
                state = .running(epoch: epoch, disk: .redirected(nextSequence: sequence), loop: loop)
                let id = JournalRecordID(vm: configuration.vm, epoch: epoch, sequence: sequence)
                try await redirect.append(id, payload: payload)
                acknowledged(id)
                // Re-checked after the await: a stop that came meanwhile ends the loop.
                guard case .running(epoch, .redirected, loop) = state else { return false }
                state = .running(epoch: epoch, disk: .redirected(nextSequence: sequence + 1), loop: loop)
            } else {
                let journal: DiskJournal
                switch disk {
                case .direct(let open): journal = open
                case .redirected(let next):
                    // The direct path is back: reopen (replaying what the coordinator appended).
                    journal = try DiskJournal.open(path: configuration.diskPath, vm: configuration.vm, epoch: epoch)
                    guard journal.nextSequence == next else {
                        journal.close()
                        throw JournalError.redirected(
                            file: configuration.diskPath,
                            "after redirected I/O the journal continues at seq \(journal.nextSequence), "
                                + "but this guest's next record is seq \(next); start the VM again")
                    }
                    state = .running(epoch: epoch, disk: .direct(journal), loop: loop)
                }
                acknowledged(try journal.append(epoch: epoch, payload: payload))
            }
            return true
        } catch {
            // A stop during a redirected append already ended the guest; only a running one fails.
            guard case .running(_, let current, _) = state else { return false }
            failure = error.description
            state = .stopped
            if case .direct(let journal) = current { journal.close() }
            return false
        }
    }

    private func acknowledged(_ id: JournalRecordID) {
        lastSequence = id.sequence
        recordsWritten += 1
        onAcknowledged?(id)
    }
}
