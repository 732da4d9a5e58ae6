//! Job files arrive over gRPC: no text may panic the parser. The shipped
//! examples are cut, and given multi-byte and odd characters, all along their
//! text, and random mixtures of YAML's punctuation.

use flowserver_control::jobspec::parse_job_file;

fn examples() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jobfiles");
    let mut texts: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap()).collect();
    texts.sort();
    assert!(texts.len() >= 5, "{}", dir.display());
    texts
}

#[test]
fn no_job_file_panics_the_parser() {
    let oddities =
        ["\u{e9}", "\u{20ac}", "\u{1f600}", "\0", "\t", ":", "'", "\"", "{", "[", "\n", "-", "#", "&a", "*a"];
    for text in examples() {
        let boundaries: Vec<usize> = (0..=text.len()).filter(|&at| text.is_char_boundary(at)).collect();
        // Every third position (each file is long: this keeps the test quick),
        // a different one for the cut and the insertion.
        for (step, &at) in boundaries.iter().enumerate() {
            match step % 3 {
                0 => {
                    let _ = parse_job_file("job.yaml", &text[..at]);
                }
                1 => {
                    let odd = oddities[step / 3 % oddities.len()];
                    let _ = parse_job_file("job.yaml", &format!("{}{odd}{}", &text[..at], &text[at..]));
                }
                _ => {}
            }
        }
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let pieces = ["a", ":", " ", "\n", "- ", "'", "\"", "{", "}", "[", "]", ",", "#", "\u{20ac}", "version: v1.0", "0"];
    for _ in 0..3000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = usize::try_from(state % 40).unwrap();
        let text: String = (0..len).map(|i| pieces[usize::try_from((state >> (i % 48)) % 16).unwrap()]).collect();
        let _ = parse_job_file("job.yaml", &text);
    }
}
