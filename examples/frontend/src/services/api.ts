// The app's API, as the page calls it. The demo signs in with the `user` query parameter,
// sent as the X-Demo-User header: the reference app's stand-in for real authentication.

export type StreamChatToken = {
  token: string;
  user_id: string;
  api_key: string;
  app_id: string | null;
  // The Stream base URL the client must use (the emulator's); null for Stream itself.
  base_url: string | null;
};

export type ConversationChannel = {
  conversation_id: string;
  channel_type: string;
  channel_id: string;
  cid: string;
  synced: boolean;
  pending_import: boolean;
};

export type Migration = {
  conversation_id: string;
  channel_type: string;
  channel_id: string;
  cid: string;
  synced: boolean;
  status: 'synced' | 'pending' | 'pending_import' | 'failed' | 'not_requested';
  poll: string | null;
};

export type ConversationMessage = {
  id: string;
  conversation_id: string;
  sender_id: string | null;
  sender_name: string | null;
  content: string;
  created_at: string;
};

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function signedInUser(): string | null {
  return new URLSearchParams(window.location.search).get('user');
}

async function request<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  const user = signedInUser();
  if (user) headers['X-Demo-User'] = user;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    const answer = await response.json().catch(() => null);
    const detail = typeof answer?.detail === 'string' ? answer.detail : response.statusText;
    throw new ApiError(response.status, `${method} ${path}: ${detail}`);
  }
  return (await response.json()) as T;
}

const conversation = (id: string) => `/chat/conversations/${encodeURIComponent(id)}`;

export const getStreamChatToken = () => request<StreamChatToken>('GET', '/chat/token');

export const getConversationChannel = (conversationId: string) =>
  request<ConversationChannel>('GET', `${conversation(conversationId)}/channel`);

// Asks for a conversation not in Stream yet to go ahead of the backlog: 202 while pending.
export const migrateConversation = (conversationId: string) =>
  request<Migration>('POST', `${conversation(conversationId)}/migrate`);

export const getMigration = (conversationId: string) =>
  request<Migration>('GET', `${conversation(conversationId)}/migrate`);

// The legacy endpoints the old polling page used.
export const getMessages = (conversationId: string) =>
  request<ConversationMessage[]>('GET', `${conversation(conversationId)}/messages`);

export const postMessage = (conversationId: string, content: string) =>
  request<ConversationMessage>('POST', `${conversation(conversationId)}/messages`, { content });
