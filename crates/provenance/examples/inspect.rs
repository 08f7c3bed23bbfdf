//! Print the provenance record of each file as JSON: `cargo run --example inspect -- FILE…`

fn main() {
    for path in std::env::args().skip(1) {
        match provenance::inspect_path(&path) {
            Ok(ev) => match serde_json::to_string_pretty(&ev) {
                Ok(json) => println!("{path}: {json}"),
                Err(e) => eprintln!("{path}: {e}"),
            },
            Err(e) => eprintln!("{e}"),
        }
    }
}
