// swift-tools-version: 6.1
// Flotilla: a failover cluster for virtual machines. The target list is the architecture
// (docs/architecture.md): pure cores import only ClusterModel; shells do the I/O.
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "flotilla",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "flotilla", targets: ["flotilla"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2")
    ],
    targets: [
        // Pure: ids and small value types shared by every module.
        .target(name: "ClusterModel", swiftSettings: swiftSettings),

        // Pure: the Raft consensus state machine (tick/step/propose in, Ready out).
        .target(name: "RaftCore", dependencies: ["ClusterModel"], swiftSettings: swiftSettings),

        // Shell: write-ahead log segments with checksums, durable files, crash recovery.
        .target(name: "RaftStorage", dependencies: ["ClusterModel", "RaftCore"], swiftSettings: swiftSettings),

        // Pure: the replicated state machine (commands, validation, deterministic apply, snapshots).
        .target(name: "ClusterState", dependencies: ["ClusterModel"], swiftSettings: swiftSettings),

        // Shell: the node daemon — configuration, Raft loop, API, peer RPC, agent, services.
        .target(
            name: "Node", dependencies: ["ClusterModel", "ClusterState", "RaftCore", "RaftStorage"],
            swiftSettings: swiftSettings),

        // The command-line entry point (argument parsing only).
        .executableTarget(
            name: "flotilla",
            dependencies: [
                "ClusterModel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),

        .testTarget(name: "ClusterModelTests", dependencies: ["ClusterModel"], swiftSettings: swiftSettings),
        .testTarget(
            name: "ClusterStateTests", dependencies: ["ClusterState", "ClusterModel"], swiftSettings: swiftSettings),
        .testTarget(name: "RaftCoreTests", dependencies: ["RaftCore", "ClusterModel"], swiftSettings: swiftSettings),
        .testTarget(
            name: "NodeTests",
            dependencies: ["Node", "ClusterModel", "RaftCore", "RaftStorage"],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "RaftStorageTests", dependencies: ["RaftStorage"], swiftSettings: swiftSettings),
    ],
    swiftLanguageModes: [.v6]
)
