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
        .executable(name: "flotilla", targets: ["flotilla"]),
        .executable(name: "flotilla-bench", targets: ["FlotillaBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // Pure: ids and small value types shared by every module.
        .target(name: "ClusterModel", swiftSettings: swiftSettings),

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

        // Shell: libnghttp2 (Debian libnghttp2-dev) does HTTP/2 framing, HPACK and flow control.
        .systemLibrary(name: "CNghttp2", pkgConfig: "libnghttp2", providers: [.apt(["libnghttp2-dev"])]),

        // Shell: HTTP/2 (h2c) server and client on SwiftNIO + libnghttp2, with an HTTP/1.1 fallback.
        .target(
            name: "HTTP2",
            dependencies: [
                "CNghttp2",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "HTTP2Tests",
            dependencies: [
                "HTTP2",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // Benchmark drivers: small servers and load generators that `make bench` runs.
        .executableTarget(
            name: "FlotillaBench",
            dependencies: [
                "HTTP2",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
