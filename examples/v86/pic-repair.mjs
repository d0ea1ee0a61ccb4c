// A workaround for a bug in v86's 8259 PIC (v86 0.5.x, src/rust/cpu/pic.rs)
// that can stop a guest's PCI NIC for good under sustained traffic.
//
// When the master PIC acknowledges its cascade input (IRQ 2) but the slave
// no longer has a request (the device dropped its line between the master
// latching the edge and the CPU taking the interrupt), v86's
// acknowledge_irq_slave() returns no vector and leaves IRQ 2 in the
// master's in-service register. The guest never saw an interrupt, so no EOI
// comes, and every slave interrupt after it (IRQ 8-15: the PCI NICs are on
// 10 and 11) is blocked: the guest's driver logs "NETDEV WATCHDOG" and its
// transfer stops. A real 8259 answers that acknowledge with the slave's
// spurious vector (IRQ 15), and Linux's spurious-interrupt path then sends
// the master the EOI for IRQ 2.
//
// This does the same in effect: every 100 ms it reads the two PICs' state in
// v86's wasm memory, and when the master has had IRQ 2 in service with
// nothing in service on the slave at two looks in a row, it clears that
// bit. A guest handling a real slave interrupt has the slave's bit in
// service too, and ends both within microseconds.
//
// Usage, in a page or under Node, once the V86 object exists:
//
//   import { installPicRepair } from "./pic-repair.mjs";
//   const emulator = new V86({ ... });
//   installPicRepair(emulator, (info) => console.log("PIC repaired", info));
//
// Returns a function that stops the checks. usernet's tests/v86/boot_v86.mjs
// uses it (--repair-pic); docs/performance.md has the measurements.

// struct Pic0 is #[repr(C)] in the layout cpu.get_state_pic() saves:
// byte 2 is the in-service register, byte 3 the request register.
const PIC_ISR = 2;
const PIC_IRR = 3;
const CASCADE = 1 << 2;

export function installPicRepair(emulator, onRepair = () => {}, intervalMs = 100) {
    let looks = 0;
    let repairs = 0;
    const timer = setInterval(() => {
        const cpu = emulator.v86?.cpu;
        if (!cpu?.get_pic_addr_master || !cpu.wasm_memory) return;
        const master = new Uint8Array(cpu.wasm_memory.buffer, cpu.get_pic_addr_master(), 13);
        const slave = new Uint8Array(cpu.wasm_memory.buffer, cpu.get_pic_addr_slave(), 13);
        if (!(master[PIC_ISR] & CASCADE) || slave[PIC_ISR] !== 0) {
            looks = 0;
            return;
        }
        if (++looks < 2) return;
        const info = {
            repairs: ++repairs,
            master: { isr: master[PIC_ISR], irr: master[PIC_IRR] },
            slave: { isr: slave[PIC_ISR], irr: slave[PIC_IRR] },
        };
        master[PIC_ISR] &= ~CASCADE;
        looks = 0;
        onRepair(info);
    }, intervalMs);
    timer.unref?.();
    return () => clearInterval(timer);
}
