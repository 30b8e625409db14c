//! Where the relay is in the outbox: a document per outbox collection in the checkpoint
//! collection (`relay_checkpoints`), `{_id: <outbox collection>, resumeToken, lastId, updatedAt}`.
//!
//! It is written only after JetStream acknowledged the publish it names and every one before it.
//! `resumeToken` = where to resume the change stream (`null` = catch up from the collection:
//! every document with `_id > lastId`, oldest first); `lastId` = the `_id` of the last published
//! document (`null` = none yet: catch up from the start of the collection).

use bson::{Bson, Document, doc};
use mongodb::Collection;
use mongodb::change_stream::event::ResumeToken;

use super::RelayError;

/// What the relay has had acknowledged, contiguously.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    pub resume_token: Option<ResumeToken>,
    pub last_id: Option<Bson>,
}

/// The checkpoint of `outbox`, `None` if the relay never ran on it.
pub(crate) async fn load(
    checkpoints: &Collection<Document>,
    outbox: &str,
) -> Result<Option<Checkpoint>, RelayError> {
    let found = checkpoints
        .find_one(doc! {"_id": outbox})
        .await
        .map_err(|source| RelayError::Mongo {
            what: "cannot read the checkpoint",
            source,
        })?;
    let Some(found) = found else {
        return Ok(None);
    };
    let resume_token = match found.get("resumeToken") {
        None | Some(Bson::Null) => None,
        Some(token) => match bson::from_bson::<ResumeToken>(token.clone()) {
            Ok(token) => Some(token),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "relay: the saved resume token cannot be read; catching up from the collection"
                );
                None
            }
        },
    };
    let last_id = match found.get("lastId") {
        None | Some(Bson::Null) => None,
        Some(id) => Some(id.clone()),
    };
    Ok(Some(Checkpoint {
        resume_token,
        last_id,
    }))
}

/// Replaces (or creates) the checkpoint of `outbox`.
pub(crate) async fn save(
    checkpoints: &Collection<Document>,
    outbox: &str,
    checkpoint: &Checkpoint,
) -> Result<(), RelayError> {
    let token = match &checkpoint.resume_token {
        Some(token) => bson::to_bson(token).map_err(|e| RelayError::Checkpoint(e.to_string()))?,
        None => Bson::Null,
    };
    let replacement = doc! {
        "_id": outbox,
        "resumeToken": token,
        "lastId": checkpoint.last_id.clone().unwrap_or(Bson::Null),
        "updatedAt": bson::DateTime::now(),
    };
    checkpoints
        .replace_one(doc! {"_id": outbox}, replacement)
        .upsert(true)
        .await
        .map_err(|source| RelayError::Mongo {
            what: "cannot save the checkpoint",
            source,
        })?;
    Ok(())
}
