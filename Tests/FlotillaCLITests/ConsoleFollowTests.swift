// `flotilla vm console --follow`: offsets within one guest, and a new guest's console from its start.
import FlotillaAPI
import FlotillaCLI
import Testing

@Suite struct ConsoleFollowTests {
    static func answer(_ node: String, epoch: UInt64, start: UInt64, text: String, size: UInt64? = nil) -> ConsoleView {
        let next = start + UInt64(text.utf8.count)
        return ConsoleView(
            vm: "web", node: node, epoch: epoch, start: start, next: next, size: size ?? next, text: text)
    }

    @Test func itAsksForTheTailThenFromWhereEachAnswerEnded() {
        var follow = ConsoleFollow()
        #expect(follow.offset == nil)
        #expect(follow.take(Self.answer("n1", epoch: 3, start: 100, text: "up\n")) == "up\n")
        #expect(follow.offset == 103)
        #expect(follow.take(Self.answer("n1", epoch: 3, start: 103, text: "")) == "")
        #expect(follow.offset == 103)
        #expect(follow.take(Self.answer("n1", epoch: 3, start: 103, text: "uptime=4\n")) == "uptime=4\n")
        #expect(follow.offset == 112)
    }

    @Test func aGuestOnAnotherNodeOrEpochIsReadFromItsStartAfterALineThatSaysSo() {
        var follow = ConsoleFollow()
        _ = follow.take(Self.answer("n1", epoch: 3, start: 0, text: "up\nuptime=9\n"))
        // Failed over: the answer is for the old offset in the new console, so it asks again from 0.
        let moved = follow.take(Self.answer("n2", epoch: 5, start: 12, text: "boot", size: 16))
        #expect(moved == "\n--- web now runs on n2 under epoch 5: its console from the start ---\n")
        #expect(follow.offset == 0)
        #expect(follow.take(Self.answer("n2", epoch: 5, start: 0, text: "booting\n")) == "booting\n")
        #expect(follow.offset == 8)
        // Restarted on the same node under a new epoch, answered from 0: printed at once.
        let again = follow.take(Self.answer("n2", epoch: 6, start: 0, text: "hi\n"))
        #expect(again == "\n--- web now runs on n2 under epoch 6: its console from the start ---\nhi\n")
        #expect(follow.offset == 3)
    }

    @Test func itWaitsOutAGuestThatIsNotRunningNowButNotAMissingVMOrConsole() {
        #expect(ConsoleFollow.waitsOut(status: 503, message: "not_started: …"))
        #expect(ConsoleFollow.waitsOut(status: nil, message: "cannot reach the Flotilla API"))
        #expect(ConsoleFollow.waitsOut(status: 409, message: "not_running: web is pending"))
        #expect(!ConsoleFollow.waitsOut(status: 409, message: "no_console: web runs a simulated guest"))
        #expect(!ConsoleFollow.waitsOut(status: 404, message: "not_found: no VM is named web"))
    }
}
