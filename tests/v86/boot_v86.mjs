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
// --repair-pic works around a bug in v86's 8259 PIC (src/rust/cpu/pic.rs,
// v86 0.5.x): when the master acknowledges its cascade input (IRQ 2) but the
// slave no longer has a request (the device dropped its line between the
// master latching the edge and the CPU taking the interrupt),
// acknowledge_irq_slave() returns no vector and leaves IRQ 2 in the master's
// in-service register. No EOI ever comes for an interrupt the guest never
// saw, so every slave IRQ (8-15: the PCI NICs on 10 and 11) is blocked for
// good and the guest's NIC driver sees nothing more than its watchdog. A
// real 8259 answers that acknowledge with the slave's spurious vector
// (IRQ 15), and Linux's spurious-IRQ path then sends the master the EOI for
// IRQ 2. The repair does the same in effect: every 100 ms it looks at the
// two PICs' state, and if the master has had IRQ 2 in service with nothing in
// service on the slave at two looks in a row, it clears that bit (and says
// so on stderr). A guest handling a real slave interrupt has the slave's
// bit in service too, and clears both within microseconds.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { V86 } from "v86";

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

// The PIC state lives in v86's wasm memory (struct Pic0, #[repr(C)], the
// layout cpu.get_state_pic() saves): byte 2 is the in-service register,
// byte 3 the request register.
const PIC_ISR = 2;
const PIC_IRR = 3;
let repairs = 0;
if (repairPic) {
    let looks = 0;
    setInterval(() => {
        const cpu = emulator.v86?.cpu;
        if (!cpu?.get_pic_addr_master) return;
        const master = new Uint8Array(cpu.wasm_memory.buffer, cpu.get_pic_addr_master(), 13);
        const slave = new Uint8Array(cpu.wasm_memory.buffer, cpu.get_pic_addr_slave(), 13);
        if (!(master[PIC_ISR] & 4) || slave[PIC_ISR] !== 0) {
            looks = 0;
            return;
        }
        if (++looks < 2) return;
        const hex = (b) => b.toString(16).padStart(2, "0");
        const state = `master isr=${hex(master[PIC_ISR])} irr=${hex(master[PIC_IRR])}, ` +
                      `slave isr=${hex(slave[PIC_ISR])} irr=${hex(slave[PIC_IRR])}`;
        master[PIC_ISR] &= ~4;
        looks = 0;
        repairs++;
        console.error(`[boot_v86] repaired the PIC after ${(Date.now() - t0) / 1000} s: IRQ 2 was in service ` +
                      `on the master with nothing in service on the slave (${state}; repair ${repairs})`);
    }, 100).unref();
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
