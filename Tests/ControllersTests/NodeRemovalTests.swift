// Removing a node for good: every reason it is refused, with what to do, and the cases where it may go.
import ClusterModel
import ClusterState
import Controllers
import Testing

@Suite struct NodeRemovalTests {
    static let voters: Set<NodeID> = [1, 2, 3]

    func refusals(
        _ node: NodeID, _ fixture: Fixture, voters: Set<NodeID> = voters, leader: NodeID? = 1,
        reachable: Set<NodeID> = voters
    ) -> [NodeRemovalRefusal] {
        NodeRemoval.refusals(
            removing: node, state: fixture.state, voters: voters, leader: leader, reachable: reachable)
    }

    @Test func aDrainedNodeThatHoldsNothingMayGo() {
        var fixture = Fixture.threeNodes()
        fixture.applied(.setNodeState(3, .paused))
        #expect(refusals(3, fixture).isEmpty)
    }

    @Test func aDownNodeMayGoWhileTheOthersHaveAMajority() {
        var fixture = Fixture.threeNodes()
        fixture.runningVM("Finance", on: 3)
        fixture.applied(.setNodeState(3, .down))
        // Its VM went pending when it went down: it owns nothing, and n1, n2 answer.
        #expect(refusals(3, fixture, reachable: [1, 2]).isEmpty)
    }

    @Test func aLearnerWithoutARecordMayGo() {
        #expect(refusals(4, Fixture.threeNodes()).isEmpty)
    }

    @Test func anUpNodeMustBeDrainedFirst() {
        let refused = refusals(3, Fixture.threeNodes())
        #expect(refused == [.takesNewWork(3)])
        #expect(refused.first?.description.contains("drain it first: flotilla node drain n3") == true)
    }

    @Test func aNodeThatRunsVMsIsRefusedWithTheirNames() {
        var fixture = Fixture.threeNodes()
        fixture.runningVM("Sales", on: 2)
        fixture.runningVM("Finance", on: 2)
        fixture.applied(.setNodeState(2, .paused))
        let refused = refusals(2, fixture)
        #expect(refused == [.ownsVMs(2, names: ["Finance", "Sales"])])
        #expect(refused.first?.description == "n2 runs Finance, Sales; drain it first: flotilla node drain n2")
    }

    @Test func aCoordinatorIsToldWhereToMoveEachVolume() {
        var fixture = Fixture.threeNodes()
        fixture.applied(.createVolume("csv2", path: "volumes/csv2", coordinator: 1))
        fixture.applied(.setNodeState(1, .paused))
        fixture.applied(.setNodeState(2, .paused))
        let refused = refusals(1, fixture, leader: 2)
        #expect(refused == [.coordinatesVolumes(1, ["csv1", "csv2"], suggested: 3)])
        #expect(
            refused.first?.description
                == "n1 coordinates csv1 (move it: flotilla volume move csv1 --to n3), "
                + "csv2 (move it: flotilla volume move csv2 --to n3)")
    }

    @Test func aMigrationTargetIsRefusedUntilTheMigrationEnds() {
        var fixture = Fixture.threeNodes()
        let vm = fixture.runningVM("Finance", on: 1)
        fixture.applied(.beginMigration(vm, target: 3))
        fixture.applied(.setNodeState(3, .paused))
        let migration = fixture.state.activeMigration(of: vm)!.id
        let refused = refusals(3, fixture)
        #expect(refused == [.inMigrations(3, [migration])])
        #expect(refused.first?.description.contains("flotilla migration cancel \(migration)") == true)
    }

    @Test func theLeaderMustHandOverLeadershipFirst() {
        var fixture = Fixture.threeNodes()
        fixture.applied(.moveVolume("csv1", coordinator: 2))
        fixture.applied(.setNodeState(1, .paused))
        // Four voters and n2 does not answer: leadership should go to n3, which does.
        let refused = refusals(1, fixture, voters: [1, 2, 3, 4], leader: 1, reachable: [1, 3, 4])
        #expect(refused == [.leads(1, suggested: 3)])
        #expect(refused.first?.description.hasSuffix("transfer leadership first: flotilla leader transfer n3") == true)
    }

    @Test func theLastVoterNeverGoes() {
        var fixture = Fixture.threeNodes()
        fixture.applied(.moveVolume("csv1", coordinator: 2))
        fixture.applied(.setNodeState(1, .paused))
        let refused = refusals(1, fixture, voters: [1], leader: 1, reachable: [1])
        #expect(refused == [.leads(1, suggested: nil), .lastVoter(1)])
    }

    /// Three voters, n3 unreachable: removing n2 would leave n1 and n3, and n1 alone is no majority.
    @Test func aRemovalThatLeavesNoReachableMajorityIsRefused() {
        var fixture = Fixture.threeNodes()
        fixture.applied(.setNodeState(2, .paused))
        let refused = refusals(2, fixture, reachable: [1, 2])
        #expect(refused == [.leavesNoMajority(2, remaining: [1, 3], reachable: [1])])
        #expect(refused.first?.description.contains("of which only n1 answer the leader: not a majority") == true)
        // Four voters with one unreachable: removing a reachable one leaves two of three — enough.
        #expect(refusals(2, fixture, voters: [1, 2, 3, 4], reachable: [1, 2, 3]).isEmpty)
    }

    @Test func everyReasonIsGivenAtOnce() {
        var fixture = Fixture.threeNodes()
        fixture.runningVM("Finance", on: 1)
        let refused = refusals(1, fixture, leader: 1, reachable: [1])
        #expect(
            refused == [
                .takesNewWork(1), .ownsVMs(1, names: ["Finance"]), .coordinatesVolumes(1, ["csv1"], suggested: 2),
                .leads(1, suggested: nil), .leavesNoMajority(1, remaining: [2, 3], reachable: []),
            ])
    }
}
