//! One client frame in, the frames to answer it with directly out. Replies
//! and other clients' messages arrive through the hub instead.

use super::{
    protocol::{ClientFrame, ServerFrame, CLIENT_TYPES},
    session::Ctx,
};
use crate::{
    domain::{ClientMsgId, MessageText},
    error::Error,
    identity, AppState,
};
use confab_core::{
    ids::{MessageId, ThreadId},
    tokens::Claims,
};

/// Handle one client frame; returns the frames to send back directly.
pub(super) async fn handle(state: &AppState, ctx: &mut Ctx, text: &str) -> Vec<ServerFrame> {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            return vec![ServerFrame::error(
                "malformed_frame",
                "That frame is not valid JSON. Frames are JSON objects with a \"type\".",
                false,
            )]
        }
    };
    let Some(kind) = value
        .get("type")
        .and_then(|t| t.as_str())
        .map(str::to_string)
    else {
        return vec![ServerFrame::error(
            "invalid_frame",
            "Frames must be JSON objects with a string \"type\".",
            false,
        )];
    };
    if !CLIENT_TYPES.contains(&kind.as_str()) {
        return vec![ServerFrame::error(
            "unknown_type",
            format!(
                "Unknown frame type {kind:?}; expected one of {}.",
                CLIENT_TYPES.join(", ")
            ),
            false,
        )];
    }
    let client_msg_id = value
        .get("client_msg_id")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let frame: ClientFrame = match serde_json::from_value(value) {
        Ok(f) => f,
        Err(e) => {
            let frame = ServerFrame::error(
                "invalid_frame",
                format!("Invalid {kind:?} frame: {e}."),
                false,
            );
            return vec![match client_msg_id {
                Some(id) => frame.about(id),
                None => frame,
            }];
        }
    };
    match frame {
        ClientFrame::Ping => vec![ServerFrame::Pong],
        ClientFrame::Auth { .. } => vec![ServerFrame::error(
            "already_authenticated",
            "This socket is already authenticated; use \"reauth\" to present a new token.",
            false,
        )],
        ClientFrame::Reauth { token } => match reauth(state, ctx, &token).await {
            Ok(exp) => vec![ServerFrame::Reauthed { expires_at: exp }],
            Err(e) => vec![ServerFrame::from(&e)],
        },
        ClientFrame::Send {
            client_msg_id,
            thread_id,
            text,
        } => send_message(state, ctx, client_msg_id, thread_id, text).await,
        ClientFrame::Resume {
            thread_id,
            after_seq,
        } => match state.chat.resume(ctx.user, thread_id, after_seq).await {
            Ok(page) => {
                let mut frames: Vec<ServerFrame> =
                    page.events.into_iter().map(ServerFrame::from).collect();
                frames.push(ServerFrame::Resumed {
                    thread_id: page.thread_id,
                    through_seq: page.through_seq,
                    more: page.more,
                });
                frames
            }
            Err(e) => {
                let mut f = ServerFrame::from(&e);
                if let ServerFrame::Error { thread_id: t, .. } = &mut f {
                    *t = Some(thread_id);
                }
                vec![f]
            }
        },
        ClientFrame::Retry { message_id } => {
            naming(state.chat.retry(ctx.user, message_id).await, message_id)
        }
        ClientFrame::Stop { message_id } => {
            naming(state.chat.stop(ctx.user, message_id).await, message_id)
        }
    }
}

/// No frame on success (what follows arrives through the hub); an error
/// naming the message otherwise.
fn naming(result: Result<(), Error>, message_id: MessageId) -> Vec<ServerFrame> {
    match result {
        Ok(()) => vec![],
        Err(e) => {
            let mut f = ServerFrame::from(&e);
            if let ServerFrame::Error { message_id: m, .. } = &mut f {
                *m = Some(message_id);
            }
            vec![f]
        }
    }
}

async fn reauth(state: &AppState, ctx: &mut Ctx, token: &str) -> Result<i64, Error> {
    let claims: Claims = identity::authenticate(state, token).await?;
    if claims.sub != ctx.user || claims.sid != ctx.sid {
        return Err(Error::invalid(
            "token_mismatch",
            None,
            "A reauth token must belong to the same user and session as the socket.",
        ));
    }
    ctx.expires_at = claims.exp;
    Ok(claims.exp)
}

async fn send_message(
    state: &AppState,
    ctx: &Ctx,
    client_msg_id: String,
    thread_id: Option<ThreadId>,
    text: String,
) -> Vec<ServerFrame> {
    // Parsed once here; the chat domain only ever sees valid values. An id
    // that is not one cannot be echoed back.
    let client_msg_id = match ClientMsgId::parse(client_msg_id) {
        Ok(id) => id,
        Err(e) => return vec![ServerFrame::from(&e)],
    };
    let text = match MessageText::parse(text, state.config.max_message_chars) {
        Ok(t) => t,
        Err(e) => return vec![ServerFrame::from(&e).about(client_msg_id.into_inner())],
    };
    // The ack is returned here and written before the session loop reads
    // the hub again, so on this socket it always precedes the stored message
    // and the reply's pieces, which arrive through the hub.
    match state
        .chat
        .send(ctx.user, &client_msg_id, thread_id, &text)
        .await
    {
        Ok(sent) => {
            let mut frames = vec![ServerFrame::Ack {
                client_msg_id: client_msg_id.into_inner(),
                thread_id: sent.thread_id,
                message_id: sent.message_id,
                seq: sent.seq,
                duplicate: sent.duplicate,
            }];
            // At the warning share of the quota (80 %), every admitted
            // message says so, until the window frees some.
            if let Some(usage) = sent.usage.filter(|u| u.warning) {
                frames.push(ServerFrame::quota_warning(usage));
            }
            frames
        }
        Err(e) => vec![ServerFrame::from(&e).about(client_msg_id.into_inner())],
    }
}
