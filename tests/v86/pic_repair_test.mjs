// examples/v86/pic-repair.mjs against the real v86 (npm, its wasm, Debian's
// SeaBIOS): the PIC layout it assumes is v86's, it clears a stuck cascade
// after two looks, and it leaves a cascade alone while the slave has an
// interrupt in service.
//
//   node tests/v86/pic_repair_test.mjs
//
// Exits 77 (skip) when the npm package v86 or SeaBIOS is missing, unless
// CI=true: scripts/install-deps.sh installs both.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { installPicRepair } from "../../examples/v86/pic-repair.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const seabios = process.env.USERNET_SEABIOS_DIR || "/usr/share/seabios";

let V86;
try {
    ({ V86 } = await import("v86"));
    fs.accessSync(path.join(seabios, "bios.bin"));
} catch (e) {
    console.error(`pic_repair_test: needs the npm package v86 in tests/v86 and SeaBIOS ` +
                  `(scripts/install-deps.sh): ${e.message}`);
    process.exit(process.env.CI === "true" ? 1 : 77);
}
const image = (p) => {
    const b = fs.readFileSync(p);
    return { buffer: b.buffer.slice(b.byteOffset, b.byteOffset + b.length) };
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A machine with no disk: SeaBIOS programs both PICs (master vectors at
// 0x08, slave at 0x70) and then finds nothing to boot. Stopped there, the
// PIC state changes only when the test writes it.
async function bootedBios() {
    const emulator = new V86({
        wasm_path: path.join(here, "node_modules", "v86", "build", "v86.wasm"),
        bios: image(path.join(seabios, "bios.bin")),
        vga_bios: image(path.join(seabios, "vgabios-stdvga.bin")),
        memory_size: 32 * 1024 * 1024,
        autostart: true,
        disable_keyboard: true,
        disable_mouse: true,
        disable_speaker: true,
    });
    const pic = () => {
        const cpu = emulator.v86?.cpu;
        if (!cpu?.get_pic_addr_master) return null;
        return {
            master: new Uint8Array(cpu.wasm_memory.buffer, cpu.get_pic_addr_master(), 13),
            slave: new Uint8Array(cpu.wasm_memory.buffer, cpu.get_pic_addr_slave(), 13),
        };
    };
    for (let i = 0; i < 300; i++) {
        const p = pic();
        if (p && p.master[1] === 0x08 && p.slave[1] === 0x70) {
            await emulator.stop();
            return { emulator, pic };
        }
        await sleep(50);
    }
    emulator.destroy();
    throw new Error("SeaBIOS did not program the PICs within 15 s (or struct Pic0's layout changed: " +
                    "byte 1 is no longer the vector base)");
}

test("pic-repair clears only a cascade in service with nothing in service on the slave", async () => {
    const { emulator, pic } = await bootedBios();
    try {
        const repairs = [];
        const stop = installPicRepair(emulator, (r) => repairs.push(r), 20);
        const { master, slave } = pic();
        assert.equal(master[2] & 4, 0, "no cascade in service after the BIOS");

        // A slave interrupt being handled: IRQ 2 in service on the master,
        // IRQ 10 (bit 2) on the slave. Left alone.
        master[2] |= 4;
        slave[2] |= 4;
        await sleep(150);
        assert.equal(master[2] & 4, 4);
        assert.equal(repairs.length, 0);

        // The stuck state v86 leaves after a spurious cascade acknowledge:
        // cleared within two looks, reported once.
        slave[2] = 0;
        slave[3] = 4;
        master[3] |= 4;
        await sleep(150);
        assert.equal(master[2] & 4, 0, "the cascade is no longer in service");
        assert.equal(repairs.length, 1);
        assert.equal(repairs[0].master.isr & 4, 4);
        assert.equal(repairs[0].slave.isr, 0);
        assert.equal(repairs[0].slave.irr, 4);

        // Stopped: no more repairs.
        stop();
        master[2] |= 4;
        await sleep(100);
        assert.equal(master[2] & 4, 4);
        assert.equal(repairs.length, 1);
    } finally {
        emulator.destroy();
    }
});
