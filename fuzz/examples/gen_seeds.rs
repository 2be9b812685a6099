//! Writes the hand-made seeds to `seeds/<target>/<name>` (run from the fuzz/ directory):
//! `cargo run --example gen_seeds`.

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let mut count = 0;
    for (target, name, bytes) in stdws_fuzz::seeds::all() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
        count += 1;
    }
    println!("wrote {count} seeds under {}", root.display());
    Ok(())
}
