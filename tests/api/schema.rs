//! `schema.graphql` is the published contract; it must be what the code serves.

#[test]
fn schema_file_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    let from_code = tessera::graphql::sdl();
    assert!(
        on_disk == from_code,
        "schema.graphql is out of date: run `cargo run -- export-schema --output schema.graphql` and commit it"
    );
}
