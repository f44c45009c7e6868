//! Finds libwinattn.so and tells Cargo how to link it.
//!
//! Search order:
//! 1. `WINATTN_LIB_DIR`: a directory holding `libwinattn.so` (an install's lib dir or a build tree).
//! 2. `pkg-config --libs-only-L winattn` (set `PKG_CONFIG_PATH` to `<prefix>/lib/pkgconfig`, or to
//!    `<build>/pkgconfig` for an uninstalled build tree).
//! 3. Neither: link `-lwinattn` from the linker's default paths (a system-wide install).
//!
//! The directory found is also written as an rpath into this crate's tests and examples, so they run
//! without `LD_LIBRARY_PATH`. Cargo does not pass link arguments of a dependency's build script on to the
//! binaries of other crates: those need `LD_LIBRARY_PATH` or their own rpath.
use std::env;
use std::path::PathBuf;
use std::process::Command;

fn from_pkg_config() -> Vec<PathBuf> {
    let output = match Command::new("pkg-config")
        .args(["--libs-only-L", "winattn"])
        .output()
    {
        Ok(output) if output.status.success() => output,
        _ => return Vec::new(),
    };
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|flag| flag.strip_prefix("-L"))
        .map(PathBuf::from)
        .collect()
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=WINATTN_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let dirs: Vec<PathBuf> = match env::var_os("WINATTN_LIB_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if !dir.join("libwinattn.so").exists() {
                println!(
                    "cargo:warning=WINATTN_LIB_DIR={} holds no libwinattn.so",
                    dir.display()
                );
            }
            vec![dir]
        }
        _ => {
            let dirs = from_pkg_config();
            if dirs.is_empty() {
                println!(
                    "cargo:warning=winattn: neither WINATTN_LIB_DIR nor pkg-config gave a library \
                     directory; linking -lwinattn from the default paths"
                );
            }
            dirs
        }
    };
    for dir in &dirs {
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        // Rebuild when the library appears or changes.
        println!(
            "cargo:rerun-if-changed={}",
            dir.join("libwinattn.so").display()
        );
    }
    println!("cargo:rustc-link-lib=dylib=winattn");
}
