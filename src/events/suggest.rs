//! Names close to an unknown one, for the "did you mean" of an unknown event.

/// Names within a small edit distance, or sharing a prefix.
pub fn close_matches(name: &str, known: &[String]) -> Vec<String> {
    let lname = name.to_ascii_lowercase();
    let mut scored: Vec<(usize, &str)> = known
        .iter()
        .map(|k| (edit_distance(&lname, &k.to_ascii_lowercase()), k.as_str()))
        .filter(|(d, k)| {
            *d <= 2.max(name.len() / 4)
                || (name.len() >= 3 && k.to_ascii_lowercase().starts_with(&lname))
        })
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(4)
        .map(|(_, k)| k.to_string())
        .collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
