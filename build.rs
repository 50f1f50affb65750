//! `sqlx::migrate!` embeds `migrations/` when the crate compiles, but cargo
//! does not know the directory is an input: a new migration alone would not
//! rebuild the binary, which would then run without it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
