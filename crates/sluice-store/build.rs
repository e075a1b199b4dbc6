// `sqlx::migrate!` embeds the migration files at build time but only watches the ones that
// existed then: rebuild when the folder changes, so a new migration is never left out.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
