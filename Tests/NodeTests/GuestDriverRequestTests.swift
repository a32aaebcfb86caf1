// A VM creation's `driver`: what the API takes, and the 400 that says what is wrong.
import ClusterModel
import ClusterState
import FlotillaAPI
import Foundation
import HTTP2
import Node
import Testing

@Suite struct GuestDriverRequestTests {
    func creation(_ driver: GuestDriverView?) -> VMCreation {
        VMCreation(name: "web", startup: 256 << 20, volume: "csv1", driver: driver)
    }

    func problem(_ driver: GuestDriverView) -> String? {
        do {
            _ = try VMSpec(creation: creation(driver))
            return nil
        } catch {
            #expect(error.status == 400)
            return error.detail
        }
    }

    @Test func aQEMUDriverNamesWhatItBootsOnTheVolumes() throws {
        #expect(try VMSpec(creation: creation(nil)).driver == .simulated)
        #expect(try VMSpec(creation: creation(GuestDriverView(kind: "simulated"))).driver == .simulated)
        let spec = try VMSpec(
            creation: creation(
                GuestDriverView(
                    kind: "qemu", vcpus: 2, kernel: "csv1:boot/vmlinuz", initrd: "csv2:initrd", append: "quiet")))
        #expect(
            spec.driver
                == .qemu(
                    QEMUGuestSpec(
                        vcpus: 2, kernel: DiskFile(volume: "csv1", file: "boot/vmlinuz"),
                        initrd: DiskFile(volume: "csv2", file: "initrd"), kernelArguments: "quiet")))
        // Without a kernel it boots its disk, read as its name says unless diskFormat says otherwise.
        var image = VMCreation(name: "img", startup: 256 << 20, volume: "csv1", diskFile: "img/web.qcow2")
        image.driver = GuestDriverView(kind: "qemu")
        #expect(try VMSpec(creation: image).driver == .qemu(QEMUGuestSpec(diskFormat: .qcow2)))
        image.driver = GuestDriverView(kind: "qemu", diskFormat: "raw")
        #expect(try VMSpec(creation: image).driver == .qemu(QEMUGuestSpec(diskFormat: .raw)))
        image.diskFile = nil
        image.driver = GuestDriverView(kind: "qemu", devices: ["virtio-rng"])
        #expect(try VMSpec(creation: image).driver == .qemu(QEMUGuestSpec(diskFormat: .raw, devices: ["virtio-rng"])))
        // The JSON the API takes reads back the same.
        let json =
            #"{"name": "web", "startup": "256M", "volume": "csv1", "driver": {"kind": "qemu", "kernel": "csv1:k"}}"#
        let decoded = try JSONDecoder().decode(VMCreation.self, from: Data(json.utf8))
        #expect(decoded.driver == GuestDriverView(kind: "qemu", kernel: "csv1:k"))
    }

    @Test func aBadDriverIsA400ThatSaysWhatToChange() {
        #expect(problem(GuestDriverView(kind: "xen")) == "driver.kind is simulated or qemu, got xen")
        #expect(
            problem(GuestDriverView(kind: "simulated", kernel: "csv1:k"))
                == "a simulated guest takes no vcpus, kernel, initrd, append, diskFormat or devices; set driver.kind to qemu"
        )
        #expect(
            problem(GuestDriverView(kind: "qemu", diskFormat: "vmdk")) == "driver.diskFormat is raw or qcow2, got vmdk")
        #expect(
            problem(GuestDriverView(kind: "qemu", kernel: "vmlinuz"))?.hasPrefix("driver.kernel is VOLUME:PATH") == true
        )
        #expect(
            problem(GuestDriverView(kind: "qemu", kernel: "csv1:k", initrd: ":x"))?.hasPrefix(
                "driver.initrd is VOLUME:PATH")
                == true)
    }
}
