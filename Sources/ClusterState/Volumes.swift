// Applying the volume commands: create a Cluster Shared Volume, move its coordinator, delete it.
import ClusterModel

extension ClusterState {
    mutating func createVolume(_ id: VolumeID, path: String, coordinator: NodeID, _ context: ApplyContext)
        throws(Rejection) -> CommandOutcome
    {
        if let problem = id.problem { throw .invalid(problem) }
        if let problem = SharedPath.problem(path, what: "volume path") { throw .invalid(problem) }
        guard volumes[id] == nil else { throw .conflict("volume \(id) already exists; pick another id") }
        if let other = volumes.values.sorted(by: { $0.id < $1.id }).first(where: { SharedPath.overlaps($0.path, path) })
        {
            throw .conflict(
                "volume path \"\(path)\" overlaps \(other.id)'s \"\(other.path)\"; volumes may not share or nest directories"
            )
        }
        let node = try knownNode(coordinator)
        try checkTakesNewWork(node, for: "new volumes to coordinate")
        volumes[id] = VolumeRecord(id: id, path: path, coordinator: coordinator, state: .online)
        record(
            .volumeCreated, context, node: coordinator, volume: id,
            "\(id) created at \"\(path)\", coordinated by \(coordinator)")
        return .volume(id, coordinator: coordinator, .online)
    }

    mutating func moveVolume(_ id: VolumeID, to coordinator: NodeID, reason: String?, _ context: ApplyContext)
        throws(Rejection) -> CommandOutcome
    {
        try Self.checkReason(reason, of: "moveVolume")
        var volume = try knownVolume(id)
        let node = try knownNode(coordinator)
        guard volume.coordinator != coordinator || volume.state != .online else {
            throw .conflict("\(coordinator) already coordinates \(id)")
        }
        try checkTakesNewWork(node, for: "volumes to coordinate")
        let previous = volume.coordinator
        volume.coordinator = coordinator
        volume.state = .online
        volumes[id] = volume
        record(
            .volumeMoved, context, node: coordinator, volume: id,
            "\(id) coordinator \(previous) → \(coordinator)" + Self.because(reason))
        return .volume(id, coordinator: coordinator, .online)
    }

    /// Forgets the volume's record only: its directory under the shared root is left as it is
    /// (the state machine touches no files, and no node deletes data files on its behalf).
    mutating func deleteVolume(_ id: VolumeID, _ context: ApplyContext) throws(Rejection) -> CommandOutcome {
        let volume = try knownVolume(id)
        // A QEMU guest may boot a kernel or initrd from a volume other than its disk's.
        let users = vms.values.filter { vm in
            if vm.disk.volume == id { return true }
            if case .qemu(let qemu) = vm.driver { return qemu.volumes.contains(id) }
            return false
        }
        guard users.isEmpty else {
            let named = users.sorted { $0.id < $1.id }.prefix(8).map { "\($0.id) (\($0.name))" }
            throw .conflict(
                "\(named.joined(separator: ", "))\(users.count > 8 ? ", …" : "") use \(id) for their disks or "
                    + "boot files; delete those VMs first: flotilla vm delete NAME")
        }
        volumes[id] = nil
        record(.volumeDeleted, context, node: volume.coordinator, volume: id, "\(id) deleted")
        return .volume(id, coordinator: volume.coordinator, volume.state)
    }
}
