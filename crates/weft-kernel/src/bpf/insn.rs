//! eBPF instructions as values, and a tiny assembler with forward labels.
//!
//! Weft's programs are a few dozen instructions with no maps, so they are written here
//! directly rather than compiled from C: no clang or BPF linker at build time, and the
//! bytes the kernel verifies are the ones unit tests look at.

/// One 8-byte eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// Destination register in the low nibble, source in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// The instruction's bytes, little-endian as the kernel reads them on x86 and arm64.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// A register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub u8);

pub const R0: Reg = Reg(0);
pub const R1: Reg = Reg(1);
pub const R2: Reg = Reg(2);
pub const R3: Reg = Reg(3);
pub const R4: Reg = Reg(4);
pub const R5: Reg = Reg(5);
pub const R6: Reg = Reg(6);
pub const R7: Reg = Reg(7);
pub const R8: Reg = Reg(8);
pub const R9: Reg = Reg(9);
/// The read-only frame pointer; the stack lies below it.
pub const FP: Reg = Reg(10);

// Instruction classes.
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ALU32: u8 = 0x04;
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const ALU64: u8 = 0x07;
// Operand source and memory mode.
const K: u8 = 0x00;
const X: u8 = 0x08;
const MEM: u8 = 0x60;

/// Access sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    B = 0x10,
    H = 0x08,
    W = 0x00,
    DW = 0x18,
}

/// ALU operations used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alu {
    Add = 0x00,
    Sub = 0x10,
    And = 0x50,
    Mov = 0xb0,
}

/// Jump conditions used here (unsigned comparisons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    Eq = 0x10,
    Ne = 0x50,
    Le = 0xb0,
}

/// A jump target not yet placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// Collects instructions; jumps name labels that are resolved by [`Asm::finish`].
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

fn regs(dst: Reg, src: Reg) -> u8 {
    (src.0 << 4) | (dst.0 & 0x0f)
}

impl Asm {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> &mut Self {
        self.insns.push(Insn {
            code,
            regs: regs(dst, src),
            off,
            imm,
        });
        self
    }

    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `label` at the next instruction.
    pub fn bind(&mut self, label: Label) -> &mut Self {
        self.labels[label.0] = Some(self.insns.len());
        self
    }

    /// `dst = src` (64-bit).
    pub fn mov(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.push(ALU64 | X | Alu::Mov as u8, dst, src, 0, 0)
    }

    /// `dst = imm` (64-bit, sign-extended).
    pub fn mov_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.push(ALU64 | K | Alu::Mov as u8, dst, Reg(0), 0, imm)
    }

    /// `dst op= imm`, 64-bit.
    pub fn alu_imm(&mut self, op: Alu, dst: Reg, imm: i32) -> &mut Self {
        self.push(ALU64 | K | op as u8, dst, Reg(0), 0, imm)
    }

    /// `dst op= imm` on the low 32 bits (the upper half is cleared).
    pub fn alu32_imm(&mut self, op: Alu, dst: Reg, imm: u32) -> &mut Self {
        self.push(ALU32 | K | op as u8, dst, Reg(0), 0, imm as i32)
    }

    /// `dst = *(size *)(src + off)`.
    pub fn load(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(LDX | MEM | size as u8, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = src`.
    pub fn store(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(STX | MEM | size as u8, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = imm`.
    pub fn store_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) -> &mut Self {
        self.push(ST | MEM | size as u8, dst, Reg(0), off, imm)
    }

    /// `if dst <cond> imm goto label`, comparing 64 bits.
    pub fn jump_imm(&mut self, cond: Cond, dst: Reg, imm: i32, to: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), to));
        self.push(JMP | K | cond as u8, dst, Reg(0), 0, imm)
    }

    /// `if dst <cond> imm goto label`, comparing the low 32 bits.
    pub fn jump32_imm(&mut self, cond: Cond, dst: Reg, imm: u32, to: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), to));
        self.push(JMP32 | K | cond as u8, dst, Reg(0), 0, imm as i32)
    }

    /// `if dst <cond> src goto label`, comparing the low 32 bits.
    pub fn jump32(&mut self, cond: Cond, dst: Reg, src: Reg, to: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), to));
        self.push(JMP32 | X | cond as u8, dst, src, 0, 0)
    }

    /// Calls kernel helper number `helper`; arguments in r1..r5, result in r0.
    pub fn call(&mut self, helper: i32) -> &mut Self {
        self.push(JMP | 0x80, Reg(0), Reg(0), 0, helper)
    }

    /// Returns r0.
    pub fn exit(&mut self) -> &mut Self {
        self.push(JMP | 0x90, Reg(0), Reg(0), 0, 0)
    }

    /// The program, with every jump pointed at its label.
    ///
    /// # Panics
    /// On a label used but never bound, or a jump too far for 16 bits: both are bugs in
    /// the program's builder, which unit tests exercise.
    pub fn finish(mut self) -> Vec<Insn> {
        for (at, label) in std::mem::take(&mut self.fixups) {
            let target = self.labels[label.0].expect("jump to an unbound label");
            let off = target as isize - at as isize - 1;
            self.insns[at].off = i16::try_from(off).expect("jump out of range");
        }
        self.insns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_the_kernel_expects() {
        let mut a = Asm::new();
        a.mov(R6, R1).mov_imm(R0, 0).exit();
        let p = a.finish();
        // r6 = r1: BPF_ALU64 | BPF_X | BPF_MOV, dst 6, src 1.
        assert_eq!(p[0].to_bytes(), [0xbf, 0x16, 0, 0, 0, 0, 0, 0]);
        // r0 = 0
        assert_eq!(p[1].to_bytes(), [0xb7, 0x00, 0, 0, 0, 0, 0, 0]);
        // exit
        assert_eq!(p[2].to_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn loads_stores_and_calls() {
        let mut a = Asm::new();
        a.load(Size::W, R2, R6, 16)
            .store(Size::W, FP, -56, R2)
            .store_imm(Size::DW, FP, -64, 0)
            .call(69);
        let p = a.finish();
        assert_eq!(p[0].to_bytes(), [0x61, 0x62, 16, 0, 0, 0, 0, 0]);
        assert_eq!(p[1].to_bytes(), [0x63, 0x2a, 0xc8, 0xff, 0, 0, 0, 0]);
        assert_eq!(p[2].to_bytes(), [0x7a, 0x0a, 0xc0, 0xff, 0, 0, 0, 0]);
        assert_eq!(p[3].to_bytes(), [0x85, 0, 0, 0, 69, 0, 0, 0]);
    }

    #[test]
    fn jumps_resolve_forward_and_backward() {
        let mut a = Asm::new();
        let end = a.label();
        let top = a.label();
        a.bind(top);
        a.jump32_imm(Cond::Ne, R2, 8, end) // 0 -> 3
            .jump_imm(Cond::Eq, R0, 0, top) // 1 -> 0
            .mov_imm(R0, 1);
        a.bind(end);
        a.exit();
        let p = a.finish();
        assert_eq!(p[0].code, 0x06 | 0x50);
        assert_eq!(p[0].off, 2);
        assert_eq!(p[1].off, -2);
    }
}
