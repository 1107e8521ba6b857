//! "Did you mean ...?": the known word closest to a misspelt one, by edit distance. Used for
//! unknown instruction names; knows nothing about Dockerfiles itself.

/// Words longer than this get no suggestion (and cost no distance computation).
const MAX_WORD_CHARS: usize = 24;

/// Largest edit distance still worth suggesting.
const MAX_DISTANCE: usize = 2;

/// The candidate closest to `word` (ties: the alphabetically first), if close enough.
pub(super) fn closest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<String> {
    if word.chars().count() > MAX_WORD_CHARS {
        return None;
    }
    candidates
        .into_iter()
        .map(|known| (edit_distance(word, known), known))
        .filter(|(d, _)| *d <= MAX_DISTANCE)
        .min()
        .map(|(_, known)| known.to_string())
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row.first().copied().unwrap_or(0);
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let above = row.get(j + 1).copied().unwrap_or(0);
            let left = row.get(j).copied().unwrap_or(0);
            let best = (prev + cost).min(above + 1).min(left + 1);
            prev = above;
            if let Some(slot) = row.get_mut(j + 1) {
                *slot = best;
            }
        }
    }
    row.last().copied().unwrap_or(0)
}
