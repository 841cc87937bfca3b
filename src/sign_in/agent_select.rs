//! Which agent an instance-identity sign-in is for (Coder's
//! `handleAuthInstanceID`, after the several-agents-per-instance change).
//!
//! Pure: given the instance id the proof vouched for, the optional
//! `agent_name` and the candidates the store found, pick one or say why not,
//! with Coder's exact messages.

use crate::store::agents::InstanceCandidate;

/// Why no agent was chosen; each maps to one of Coder's answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 404: no candidate, or none with the requested name.
    NotFound(String),
    /// 409: several candidates and no name.
    Ambiguous(String),
    /// 400: the candidate is not on its workspace's latest build.
    NotLatest(String),
}

/// Go's `%q`: a double-quoted string with Go escapes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if c.is_control() || c == '\u{feff}' => {
                let n = c as u32;
                if n < 0x80 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Chooses the agent. `agent_name` is trimmed; empty means unspecified.
/// `candidates` are newest first, as the store returns them.
pub fn select(
    instance_id: &str,
    agent_name: Option<&str>,
    candidates: Vec<InstanceCandidate>,
) -> Result<InstanceCandidate, Refusal> {
    let id = go_quote(instance_id);
    if candidates.is_empty() {
        return Err(Refusal::NotFound(format!(
            "Instance with id {id} not found."
        )));
    }
    let name = agent_name.map(str::trim).filter(|n| !n.is_empty());
    let chosen = match name {
        Some(name) => candidates
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| {
                Refusal::NotFound(format!(
                    "No agent found with instance ID {id} and name {}.",
                    go_quote(name)
                ))
            })?,
        None if candidates.len() == 1 => candidates.into_iter().next().expect("one candidate"),
        None => {
            let mut names: Vec<String> = candidates.into_iter().map(|c| c.name).collect();
            names.sort();
            return Err(Refusal::Ambiguous(format!(
                "Multiple agents found with instance ID {id}. Set CODER_AGENT_NAME to one of: {}",
                names.join(", ")
            )));
        }
    };
    if !chosen.on_latest_build {
        return Err(Refusal::NotLatest(format!(
            "Resource found for id {id}, but isn't registered on the latest history."
        )));
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;
    use uuid::Uuid;

    fn cand(name: &str) -> InstanceCandidate {
        InstanceCandidate {
            agent_id: Uuid::new_v4(),
            name: name.to_string(),
            build_id: Uuid::new_v4(),
            workspace_id: Uuid::new_v4(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            on_latest_build: true,
        }
    }

    #[test]
    fn no_candidates_is_not_found() {
        assert_eq!(
            select("i-1", None, vec![]),
            Err(Refusal::NotFound(
                "Instance with id \"i-1\" not found.".into()
            ))
        );
        assert!(matches!(
            select("i-1", Some("main"), vec![]),
            Err(Refusal::NotFound(_))
        ));
    }

    #[test]
    fn one_candidate_without_a_name_is_chosen() {
        let c = cand("main");
        assert_eq!(select("i-1", None, vec![c.clone()]), Ok(c.clone()));
        for blank in ["", "   ", "\t\n"] {
            assert_eq!(
                select("i-1", Some(blank), vec![c.clone()]),
                Ok(c.clone()),
                "{blank:?}"
            );
        }
    }

    #[test]
    fn a_wrong_name_is_never_ignored() {
        let err = select("i-1", Some(" nope "), vec![cand("main")]).expect_err("wrong name");
        assert_eq!(
            err,
            Refusal::NotFound("No agent found with instance ID \"i-1\" and name \"nope\".".into())
        );
    }

    #[test]
    fn names_select_case_sensitively_after_trimming() {
        let (a, b) = (cand("alpha"), cand("beta"));
        assert_eq!(
            select("i", Some("  beta "), vec![a.clone(), b.clone()]),
            Ok(b)
        );
        assert!(select("i", Some("Alpha"), vec![a]).is_err());
    }

    #[test]
    fn several_without_a_name_is_ambiguous_with_sorted_names_and_duplicates_kept() {
        let err = select(
            "i-1",
            Some(" "),
            vec![cand("main"), cand("dev"), cand("main")],
        )
        .expect_err("ambiguous");
        assert_eq!(
            err,
            Refusal::Ambiguous(
                "Multiple agents found with instance ID \"i-1\". Set CODER_AGENT_NAME to one of: dev, main, main"
                    .into()
            )
        );
    }

    #[test]
    fn the_newest_matching_candidate_wins_and_must_be_on_the_latest_build() {
        let mut old = cand("main");
        old.on_latest_build = false;
        let err = select("i-1", Some("main"), vec![old]).expect_err("not latest");
        assert_eq!(
            err,
            Refusal::NotLatest(
                "Resource found for id \"i-1\", but isn't registered on the latest history.".into()
            )
        );
        let newest = cand("main");
        let older = cand("main");
        assert_eq!(
            select("i", Some("main"), vec![newest.clone(), older]),
            Ok(newest)
        );
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(go_quote("tab\there\n"), "\"tab\\there\\n\"");
        assert_eq!(go_quote("\u{1}é"), "\"\\x01é\"");
    }
}
