//! Recognising WebAssembly binaries by their preamble.

use std::io::Read;
use std::path::Path;

/// What the first eight bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A component (`\0asm` + layer 1): what a slug holds.
    Component,
    /// A core module (`\0asm` version 1): needs an adapter to become a component.
    CoreModule,
    NotWasm,
}

const MAGIC: [u8; 4] = *b"\0asm";

/// Classifies a binary from its preamble.
pub fn kind_of_bytes(head: &[u8]) -> WasmKind {
    if head.len() < 8 || head[..4] != MAGIC {
        return WasmKind::NotWasm;
    }
    match head[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => WasmKind::Component,
        [0x01, 0x00, 0x00, 0x00] => WasmKind::CoreModule,
        _ => WasmKind::NotWasm,
    }
}

/// Classifies a file from its first eight bytes.
pub fn kind_of_file(path: &Path) -> std::io::Result<WasmKind> {
    let mut head = [0u8; 8];
    let mut file = std::fs::File::open(path)?;
    let mut filled = 0;
    while filled < head.len() {
        let n = file.read(&mut head[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(kind_of_bytes(&head[..filled]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preambles() {
        assert_eq!(kind_of_bytes(b"\0asm\x0d\0\x01\0rest"), WasmKind::Component);
        assert_eq!(kind_of_bytes(b"\0asm\x01\0\0\0"), WasmKind::CoreModule);
        assert_eq!(kind_of_bytes(b"#!/bin/sh"), WasmKind::NotWasm);
        assert_eq!(kind_of_bytes(b""), WasmKind::NotWasm);
    }
}
