//! The application service: loads a change from its events, asks the domain to decide, and
//! writes the decided event through the group committer. HTTP handlers, the demo and the
//! CLI all act through here, so every write path records a ledger event.

use std::sync::Arc;

use domain::{Action, Actor, Change, ChangeEvent, NewChange, Policy, Recorded, Refusal, Role};
use store::{ChangeColumns, Committer, NewEntry, StoreError, StoredEvent, Target, User, Write};
use time::OffsetDateTime;

/// Why an action did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A preventive control refused it.
    #[error("{0}")]
    Refused(Refusal),
    #[error("change `{0}` does not exist")]
    NotFound(String),
    #[error("`{id}` changed meanwhile: it is at version {actual}, the action expected {expected}")]
    VersionConflict {
        id: String,
        expected: u64,
        actual: u64,
    },
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("the user `{0}` is deactivated")]
    Deactivated(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("recorded history of `{id}` cannot be read: {message}")]
    Corrupt { id: String, message: String },
}

/// A change together with the events it was derived from.
#[derive(Debug, Clone)]
pub struct LoadedChange {
    pub change: Change,
    pub events: Vec<StoredEvent>,
}

/// The lifecycle service shared by every entry point.
pub struct Service {
    pub store: Arc<dyn store::Store>,
    committer: Committer,
    policy: Arc<Policy>,
}

impl Service {
    pub fn new(store: Arc<dyn store::Store>, policy: Policy) -> Service {
        let committer = Committer::start(store.clone());
        Service {
            store,
            committer,
            policy: Arc::new(policy),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The actor a stored user acts as, with the roles and groups they hold now.
    pub fn actor(user: &User) -> Result<Actor, ServiceError> {
        if !user.active {
            return Err(ServiceError::Deactivated(user.name.clone()));
        }
        let mut roles = Vec::new();
        for r in &user.roles {
            // Roles are validated when a user is added; an unknown one grants nothing.
            if let Ok(role) = r.parse::<Role>() {
                roles.push(role);
            }
        }
        Ok(Actor {
            name: user.name.clone(),
            roles,
            groups: user.groups.clone(),
            machine: user.machine,
        })
    }

    /// Loads and folds one change.
    pub fn load(&self, id: &str) -> Result<LoadedChange, ServiceError> {
        let events = self.store.change_events(id)?;
        if events.is_empty() {
            return Err(ServiceError::NotFound(id.to_string()));
        }
        let change = fold(id, &events)?;
        Ok(LoadedChange { change, events })
    }

    /// Records a new change.
    pub async fn create(
        &self,
        actor: &Actor,
        new: NewChange,
        now: OffsetDateTime,
    ) -> Result<Change, ServiceError> {
        let (mut change, write) = self.request_write(actor, &new, now)?;
        let written = self.submit(write).await?;
        change.id = written.change_id.unwrap_or_default();
        Ok(change)
    }

    /// Decides and records one action on an existing change.
    pub async fn act(
        self: &Arc<Self>,
        actor: &Actor,
        id: &str,
        action: Action,
        expected_version: Option<u64>,
        clock: &(dyn Fn() -> OffsetDateTime + Send + Sync),
    ) -> Result<(Change, ChangeEvent), ServiceError> {
        let this = self.clone();
        let owned = id.to_string();
        let loaded = tokio::task::spawn_blocking(move || this.load(&owned))
            .await
            .map_err(|e| ServiceError::Store(StoreError::Backend(e.to_string())))??;
        // The time of the action is read after the change was loaded, so that it never
        // precedes an event that committed while this request was on its way.
        let now = clock();
        let mut change = loaded.change;
        if let Some(expected) = expected_version {
            if expected != change.version {
                return Err(ServiceError::VersionConflict {
                    id: id.to_string(),
                    expected,
                    actual: change.version,
                });
            }
        }
        if let Action::Authorize(a) = &action {
            if let Some(assignee) = &a.assignee {
                self.check_assignee(assignee).await?;
            }
        }
        let (event, write) = self.action_write(&mut change, actor, &action, now)?;
        self.submit(write).await?;
        Ok((change, event))
    }

    /// The assignee builds the change, so they must be an active person allowed to plan it.
    async fn check_assignee(self: &Arc<Self>, name: &str) -> Result<(), ServiceError> {
        let this = self.clone();
        let owned = name.to_string();
        let user = tokio::task::spawn_blocking(move || this.store.user(&owned))
            .await
            .map_err(|e| ServiceError::Store(StoreError::Backend(e.to_string())))??;
        let unfit = |message: String| ServiceError::Invalid {
            code: "invalid_assignee",
            message,
        };
        let user = user.ok_or_else(|| unfit(format!("there is no user `{name}`")))?;
        if !user.active {
            return Err(unfit(format!("user `{name}` is deactivated")));
        }
        if user.machine {
            return Err(unfit(format!(
                "`{name}` is a machine identity and cannot build a change"
            )));
        }
        let planners: Vec<Role> = self.policy.roles_for(domain::ActionKind::Plan).collect();
        if !user
            .roles
            .iter()
            .any(|r| r.parse::<Role>().is_ok_and(|r| planners.contains(&r)))
        {
            let names: Vec<&str> = planners.iter().map(|r| r.as_str()).collect();
            return Err(unfit(format!(
                "`{name}` could not plan the change: the assignee needs one of the roles {}",
                names.join(", ")
            )));
        }
        Ok(())
    }

    pub(crate) async fn submit(&self, write: Write) -> Result<store::Written, ServiceError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.committer.submit(
            write,
            Box::new(move |result| {
                let _ = tx.send(result);
            }),
        );
        let result = rx.await.map_err(|_| {
            ServiceError::Store(StoreError::Backend("the committer stopped".into()))
        })?;
        result.map_err(|e| match e {
            StoreError::Conflict {
                id,
                expected,
                actual,
            } => ServiceError::VersionConflict {
                id,
                expected,
                actual,
            },
            other => ServiceError::Store(other),
        })
    }

    /// Blocking variant of [`Service::act`] for callers outside the async runtime (the
    /// demo), which also pass the time.
    pub fn act_blocking(
        &self,
        actor: &Actor,
        id: &str,
        action: Action,
        now: OffsetDateTime,
    ) -> Result<Change, ServiceError> {
        let mut change = self.load(id)?.change;
        let (_, write) = self.action_write(&mut change, actor, &action, now)?;
        self.committer.write(write)?;
        Ok(change)
    }

    /// Blocking variant of [`Service::create`].
    pub fn create_blocking(
        &self,
        actor: &Actor,
        new: NewChange,
        now: OffsetDateTime,
    ) -> Result<Change, ServiceError> {
        let (mut change, write) = self.request_write(actor, &new, now)?;
        let written = self.committer.write(write)?;
        change.id = written.change_id.unwrap_or_default();
        Ok(change)
    }

    /// Decides a new change and the write that records it. The id is allocated inside the
    /// write, so the change comes back without one.
    fn request_write(
        &self,
        actor: &Actor,
        new: &NewChange,
        now: OffsetDateTime,
    ) -> Result<(Change, Write), ServiceError> {
        let ctx = domain::Context {
            policy: &self.policy,
            actor,
            now,
        };
        let event = domain::request(new, &ctx).map_err(ServiceError::Refused)?;
        let at = Recorded {
            time: domain::action::format_instant(now),
            actor: actor.name.clone(),
        };
        let change = Change::requested("", &at, new);
        let write = Write {
            target: Target::NewChange,
            entries: vec![entry(actor, &at, &event)?],
            columns: Some(columns(&change)),
        };
        Ok((change, write))
    }

    /// Decides an action, applies it to `change`, and returns the event with the write
    /// that records it, guarded by the version the change was loaded at.
    fn action_write(
        &self,
        change: &mut Change,
        actor: &Actor,
        action: &Action,
        now: OffsetDateTime,
    ) -> Result<(ChangeEvent, Write), ServiceError> {
        let ctx = domain::Context {
            policy: &self.policy,
            actor,
            now,
        };
        let event = domain::decide(change, action, &ctx).map_err(ServiceError::Refused)?;
        let at = Recorded {
            time: domain::action::format_instant(now),
            actor: actor.name.clone(),
        };
        let version = change.version;
        change.apply(&at, &event);
        let write = Write {
            target: Target::Change {
                id: change.id.clone(),
                expected_version: version,
            },
            entries: vec![entry(actor, &at, &event)?],
            columns: Some(columns(change)),
        };
        Ok((event, write))
    }
}

/// Folds stored events into the change they describe.
pub fn fold(id: &str, events: &[StoredEvent]) -> Result<Change, ServiceError> {
    let mut decoded = Vec::with_capacity(events.len());
    for e in events {
        // The subject column that found this event is an index outside the hash; the
        // subject inside the hashed entry is the one that counts.
        if e.entry.subject.as_deref() != Some(id) {
            return Err(ServiceError::Corrupt {
                id: id.to_string(),
                message: format!(
                    "ledger entry {} is filed under `{id}` but records the subject {:?}",
                    e.seq, e.entry.subject
                ),
            });
        }
        let event: ChangeEvent =
            serde_json::from_value(e.entry.payload.clone()).map_err(|err| {
                ServiceError::Corrupt {
                    id: id.to_string(),
                    message: format!("event {}: {err}", e.seq),
                }
            })?;
        decoded.push((
            Recorded {
                time: e.entry.time.clone(),
                actor: e.entry.actor.clone(),
            },
            event,
        ));
    }
    Change::replay(id, decoded.iter().map(|(r, e)| (r.clone(), e))).map_err(|e| {
        ServiceError::Corrupt {
            id: id.to_string(),
            message: e.to_string(),
        }
    })
}

fn entry(actor: &Actor, at: &Recorded, event: &ChangeEvent) -> Result<NewEntry, ServiceError> {
    let payload = serde_json::to_value(event).map_err(|e| ServiceError::Invalid {
        code: "unencodable",
        message: e.to_string(),
    })?;
    Ok(NewEntry {
        time: at.time.clone(),
        actor: actor.name.clone(),
        // Groups decide approval slots, so they are recorded beside the roles as they stood
        // at the moment of the action.
        roles: actor
            .roles
            .iter()
            .map(|r| r.as_str().to_string())
            .chain(actor.groups.iter().map(|g| format!("group:{g}")))
            .collect(),
        kind: event.ledger_kind(),
        subject: None,
        payload,
    })
}

/// The read-model columns of a change.
pub fn columns(change: &Change) -> ChangeColumns {
    ChangeColumns {
        stage: change.stage.as_str().to_string(),
        change_type: change.change_type.as_str().to_string(),
        category: change.category.as_str().to_string(),
        title: change.title.clone(),
        requester: change.requester.clone(),
        assignee: change.assignee.clone(),
        risk: change.risk.map(|r| r.as_str().to_string()),
        systems: change.systems.clone(),
    }
}
