// Boots v86 (the npm package) under Node with its network on a WebSocket
// relay, the way a browser page would: `ws` stands in for the browser's
// WebSocket, SeaBIOS comes from Debian's seabios package.
//
//   node boot_v86.mjs [--repair-pic] RELAY_URL VMLINUZ INITRD CMDLINE [SECONDS] [NIC]
//
// The guest's serial console goes to stdout. Exits 0 when the console
// prints "UN-DONE" (tests/qemu/build-guest.sh's /init), 2 after SECONDS
// (default 240) without it. NIC: ne2k (default) or virtio.
//
// --repair-pic installs examples/v86/pic-repair.mjs, a workaround for a bug
// in v86's 8259 PIC that can stop the guest's PCI NIC for good (see there),
// and reports each repair on stderr.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { V86 } from "v86";
import { installPicRepair } from "../../examples/v86/pic-repair.mjs";

globalThis.WebSocket = WebSocket;

const args = process.argv.slice(2);
const repairPic = args[0] === "--repair-pic";
if (repairPic) args.shift();
const [relay, kernel, initrd, cmdline, seconds = "240", nic = "ne2k"] = args;
if (!initrd) {
    console.error("usage: node boot_v86.mjs [--repair-pic] RELAY_URL VMLINUZ INITRD CMDLINE [SECONDS] [NIC]");
    process.exit(64);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const image = (p) => {
    const b = fs.readFileSync(p);
    return { buffer: b.buffer.slice(b.byteOffset, b.byteOffset + b.length) };
};
const seabios = process.env.USERNET_SEABIOS_DIR || "/usr/share/seabios";

const emulator = new V86({
    wasm_path: path.join(here, "node_modules", "v86", "build", "v86.wasm"),
    bios: image(path.join(seabios, "bios.bin")),
    vga_bios: image(path.join(seabios, "vgabios-stdvga.bin")),
    bzimage: image(kernel),
    initrd: image(initrd),
    cmdline,
    memory_size: 128 * 1024 * 1024,
    vga_memory_size: 2 * 1024 * 1024,
    net_device: { type: nic === "virtio" ? "virtio" : "ne2k", relay_url: relay },
    autostart: true,
    disable_keyboard: true,
    disable_mouse: true,
    disable_speaker: true,
});

const t0 = Date.now();

let repairs = 0;
if (repairPic) {
    const hex = (b) => b.toString(16).padStart(2, "0");
    installPicRepair(emulator, (r) => {
        repairs = r.repairs;
        console.error(`[boot_v86] repaired the PIC after ${(Date.now() - t0) / 1000} s: IRQ 2 was in service ` +
                      `on the master with nothing in service on the slave (master isr=${hex(r.master.isr)} ` +
                      `irr=${hex(r.master.irr)}, slave isr=${hex(r.slave.isr)} irr=${hex(r.slave.irr)}; ` +
                      `repair ${r.repairs})`);
    });
}

let line = "";
emulator.add_listener("serial0-output-byte", (byte) => {
    const c = String.fromCharCode(byte);
    process.stdout.write(c);
    if (c !== "\n") {
        line += c;
        return;
    }
    if (line.includes("UN-INIT")) console.error(`[boot_v86] /init after ${(Date.now() - t0) / 1000} s`);
    if (line.includes("UN-DONE")) {
        console.error(`[boot_v86] done after ${(Date.now() - t0) / 1000} s` +
                      (repairPic ? `, ${repairs} PIC repairs` : ""));
        emulator.destroy();
        process.exit(0);
    }
    line = "";
});
setTimeout(() => {
    console.error(`[boot_v86] no UN-DONE after ${seconds} s`);
    process.exit(2);
}, Number(seconds) * 1000);
