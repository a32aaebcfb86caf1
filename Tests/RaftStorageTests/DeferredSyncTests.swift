// A leader's batches written on its loop and synced on another thread: what a sync covers, what a
// later sync on the loop takes along, and what a restart finds.
import ClusterModel
import FlotillaTestKit
import Foundation
import RaftCore
import RaftStorage
import Testing

private func payload(_ number: Int) -> [UInt8] { Array("record \(number)".utf8) }

private func entries(_ indices: ClosedRange<UInt64>, term: UInt64 = 1) -> [Entry] {
    indices.map { Entry(term: Term(term), index: LogIndex($0), payload: .command(Array("v\($0)".utf8))) }
}

@Test func aSyncRequestCoversTheWritesBeforeItAndNotThoseAfter() throws {
    let directory = try TemporaryDirectory()
    let (log, _, _) = try WriteAheadLog.open(.init(directory: directory.path))
    #expect(log.syncRequest() == nil, "nothing written")
    try log.append(type: 1, payload: payload(1))
    try log.write()
    #expect(log.pendingBytes == 0 && log.hasUnsyncedWrites)
    let first = try #require(log.syncRequest())
    try log.append(type: 1, payload: payload(2))
    try log.write()
    let syncs = log.syncCount
    try first.sync()
    log.completeSync(first)
    #expect(log.syncCount == syncs + 1)
    #expect(log.hasUnsyncedWrites, "the second record was written after the request")
    let second = try #require(log.syncRequest())
    try second.sync()
    log.completeSync(second)
    #expect(!log.hasUnsyncedWrites)
    #expect(log.syncRequest() == nil)
}

@Test func aSyncOnTheLoopTakesAlongWhatWasWrittenForAnotherThread() throws {
    let directory = try TemporaryDirectory()
    let (log, _, _) = try WriteAheadLog.open(.init(directory: directory.path))
    try log.append(type: 1, payload: payload(1))
    try log.write()
    let request = try #require(log.syncRequest())
    let syncs = log.syncCount
    // Nothing new buffered: the sync is for what was written.
    try log.sync()
    #expect(log.syncCount == syncs + 1 && !log.hasUnsyncedWrites)
    // The request's own sync returns later and changes nothing.
    try request.sync()
    log.completeSync(request)
    #expect(!log.hasUnsyncedWrites)
}

@Test func aRequestOutlivesItsSegmentAndCoversNothingOfTheNext() throws {
    let directory = try TemporaryDirectory()
    let (log, _, _) = try WriteAheadLog.open(.init(directory: directory.path, segmentBytes: 64))
    try log.append(type: 1, payload: payload(1))
    try log.write()
    let request = try #require(log.syncRequest())
    try log.rotate()
    try log.append(type: 1, payload: payload(2))
    try log.write()
    // The log closed the segment; the request's own descriptor of it is still open.
    try request.sync()
    log.completeSync(request)
    #expect(log.hasUnsyncedWrites, "the new segment's record is not covered by the old segment's sync")
    try log.sync()
    let (_, records, torn) = try WriteAheadLog.open(.init(directory: directory.path, segmentBytes: 64))
    #expect(torn == nil && records.map(\.payload) == [payload(1), payload(2)])
}

@Test func recordsWrittenAndNotYetSyncedComeBackWhenTheProcessDies() throws {
    let directory = try TemporaryDirectory()
    do {
        let (log, _, _) = try WriteAheadLog.open(.init(directory: directory.path))
        try log.append(type: 1, payload: payload(1))
        try log.sync()
        try log.append(type: 1, payload: payload(2))
        try log.write()
        // The process dies here, its sync not run: the page cache has the record.
    }
    let (_, records, torn) = try WriteAheadLog.open(.init(directory: directory.path))
    #expect(torn == nil && records.map(\.payload) == [payload(1), payload(2)])
}

@Test func aLeadersBatchIsWrittenAndItsSyncHandedOut() throws {
    let directory = try TemporaryDirectory()
    do {
        let (storage, _) = try RaftDiskStorage.open(directory: directory.path)
        try storage.persist(hardState: HardState(term: 1, vote: 1, commit: 0), entries: entries(1...2), snapshot: nil)
        let syncs = storage.logSyncCount
        #expect(try storage.persistLater(hardState: HardState(term: 1, vote: 1, commit: 2), entries: entries(3...5)))
        #expect(storage.logSyncCount == syncs, "written, not synced")
        #expect(
            try !storage.persistLater(hardState: HardState(term: 1, vote: 1, commit: 3), entries: []),
            "only the commit moved: nothing to sync")
        let deferred = try #require(storage.pendingSync(), "entries 3-5 are written and not durable")
        try deferred.sync()
        storage.completeSync(deferred)
        #expect(storage.logSyncCount == syncs + 1)
        #expect(storage.pendingSync() == nil)
    }
    let (_, recovered) = try RaftDiskStorage.open(directory: directory.path)
    #expect(recovered.entries.map(\.index) == (1...5).map { LogIndex($0) })
    #expect(recovered.hardState.term == 1 && recovered.hardState.vote == 1)
}

@Test func aBatchSyncedOnTheLoopSyncsWhatALeaderWroteBeforeIt() throws {
    let directory = try TemporaryDirectory()
    let (storage, _) = try RaftDiskStorage.open(directory: directory.path)
    try storage.persist(hardState: HardState(term: 1, vote: 1, commit: 0), entries: entries(1...2), snapshot: nil)
    #expect(try storage.persistLater(hardState: nil, entries: entries(3...3)))
    let syncs = storage.logSyncCount
    // A follower's batch after the node lost leadership, moving only the commit: without the
    // leader's unsynced write it would not sync, but its messages may rest on that write.
    try storage.persist(hardState: HardState(term: 1, vote: 1, commit: 3), entries: [], snapshot: nil)
    #expect(storage.logSyncCount == syncs + 1)
    #expect(storage.pendingSync() == nil)
}

@Test func persistLaterRefusesANewTermOrVote() async {
    await #expect(processExitsWith: .failure) {
        let directory = try TemporaryDirectory()
        let (storage, _) = try RaftDiskStorage.open(directory: directory.path)
        try storage.persist(hardState: HardState(term: 1, vote: 1, commit: 0), entries: [], snapshot: nil)
        _ = try storage.persistLater(
            hardState: HardState(term: 2, vote: 2, commit: 0), entries: entries(1...1, term: 2))
    }
}
