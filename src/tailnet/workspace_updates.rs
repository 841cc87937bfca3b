//! `/tailnet`'s WorkspaceUpdates (coderd's updates provider, coder/coder:coderd/workspaceupdates.go): the
//! user's workspaces and agents as a first message, then what changed
//! (upserted and deleted workspaces and agents) whenever it changes.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::rpc::proto::tailnet::{Agent, Workspace, WorkspaceStatus, WorkspaceUpdate};
use crate::store::tailnet::OwnedWorkspace;

/// A workspace as the last message left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    name: String,
    status: WorkspaceStatus,
    agents: Vec<(Uuid, String)>,
}

/// Workspaces by id, as last sent.
pub type State = BTreeMap<Uuid, Seen>;

/// `codersdk.ConvertWorkspaceStatus` for appliance's job states.
pub fn status(job_status: &str, transition: &str) -> WorkspaceStatus {
    match (job_status, transition) {
        ("running", "start") => WorkspaceStatus::Starting,
        ("running", "stop") => WorkspaceStatus::Stopping,
        ("running", "delete") => WorkspaceStatus::Deleting,
        ("succeeded", "start") => WorkspaceStatus::Running,
        ("succeeded", "stop") => WorkspaceStatus::Stopped,
        ("succeeded", "delete") => WorkspaceStatus::Deleted,
        // Failed jobs, and (as coderd) anything it does not know.
        _ => WorkspaceStatus::Failed,
    }
}

/// The state the rows describe.
pub fn state(rows: Vec<OwnedWorkspace>) -> State {
    rows.into_iter()
        .map(|w| {
            let seen = Seen {
                status: status(&w.job_status, &w.transition),
                name: w.name,
                agents: w.agents,
            };
            (w.id, seen)
        })
        .collect()
}

fn workspace(id: Uuid, w: &Seen) -> Workspace {
    Workspace {
        id: id.as_bytes().to_vec(),
        name: w.name.clone(),
        status: w.status as i32,
    }
}

fn agent(workspace_id: Uuid, (id, name): &(Uuid, String)) -> Agent {
    Agent {
        id: id.as_bytes().to_vec(),
        name: name.clone(),
        workspace_id: workspace_id.as_bytes().to_vec(),
    }
}

/// What changed from `old` to `new`, or `None` when nothing did (coderd's
/// `produceUpdate`): new workspaces with all their agents, changed names or
/// statuses, agents added and removed, workspaces gone with their agents.
pub fn diff(old: &State, new: &State) -> Option<WorkspaceUpdate> {
    let mut out = WorkspaceUpdate::default();
    for (id, w) in new {
        let Some(before) = old.get(id) else {
            out.upserted_workspaces.push(workspace(*id, w));
            out.upserted_agents
                .extend(w.agents.iter().map(|a| agent(*id, a)));
            continue;
        };
        if before.name != w.name || before.status != w.status {
            out.upserted_workspaces.push(workspace(*id, w));
        }
        for a in &w.agents {
            if !before.agents.contains(a) {
                out.upserted_agents.push(agent(*id, a));
            }
        }
        for a in &before.agents {
            if !w.agents.contains(a) {
                out.deleted_agents.push(agent(*id, a));
            }
        }
    }
    for (id, w) in old {
        if !new.contains_key(id) {
            out.deleted_workspaces.push(workspace(*id, w));
            out.deleted_agents
                .extend(w.agents.iter().map(|a| agent(*id, a)));
        }
    }
    let empty = out.upserted_workspaces.is_empty()
        && out.upserted_agents.is_empty()
        && out.deleted_workspaces.is_empty()
        && out.deleted_agents.is_empty();
    (!empty).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        id: Uuid,
        name: &str,
        job: &str,
        transition: &str,
        agents: &[(Uuid, &str)],
    ) -> OwnedWorkspace {
        OwnedWorkspace {
            id,
            name: name.into(),
            job_status: job.into(),
            transition: transition.into(),
            agents: agents.iter().map(|(i, n)| (*i, n.to_string())).collect(),
        }
    }

    #[test]
    fn statuses_are_coders() {
        assert_eq!(status("succeeded", "start"), WorkspaceStatus::Running);
        assert_eq!(status("succeeded", "stop"), WorkspaceStatus::Stopped);
        assert_eq!(status("running", "start"), WorkspaceStatus::Starting);
        assert_eq!(status("failed", "start"), WorkspaceStatus::Failed);
        assert_eq!(status("succeeded", "delete"), WorkspaceStatus::Deleted);
    }

    #[test]
    fn the_first_update_has_everything_then_only_changes() {
        let (w1, w2) = (Uuid::new_v4(), Uuid::new_v4());
        let (a1, a2, a3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let first = state(vec![
            row(w1, "dev", "succeeded", "start", &[(a1, "main")]),
            row(w2, "ci", "succeeded", "start", &[(a2, "main")]),
        ]);
        let u = diff(&State::new(), &first).unwrap();
        assert_eq!(u.upserted_workspaces.len(), 2);
        assert_eq!(u.upserted_agents.len(), 2);
        assert!(u.deleted_workspaces.is_empty() && u.deleted_agents.is_empty());
        assert_eq!(diff(&first, &first), None);

        // dev is rebuilt (a new agent), ci is stopped, then deleted.
        let second = state(vec![
            row(w1, "dev", "succeeded", "start", &[(a3, "main")]),
            row(w2, "ci", "succeeded", "stop", &[]),
        ]);
        let u = diff(&first, &second).unwrap();
        assert_eq!(u.upserted_workspaces.len(), 1);
        assert_eq!(
            u.upserted_workspaces[0].status,
            WorkspaceStatus::Stopped as i32
        );
        assert_eq!(u.upserted_agents, vec![agent(w1, &(a3, "main".into()))]);
        assert_eq!(u.deleted_agents.len(), 2);
        let third = state(vec![row(w1, "dev", "succeeded", "start", &[(a3, "main")])]);
        let u = diff(&second, &third).unwrap();
        assert_eq!(u.deleted_workspaces.len(), 1);
        assert_eq!(u.deleted_workspaces[0].id, w2.as_bytes().to_vec());
        assert!(u.upserted_workspaces.is_empty());
    }
}
