import { useEffect, useState } from 'react';
import type { Channel as StreamChannel, StreamChat } from 'stream-chat';
import {
  Channel,
  ChannelHeader,
  Chat,
  MessageComposer,
  MessageList,
  Window,
} from 'stream-chat-react';
import 'stream-chat-react/dist/css/index.css';

import { useStreamChat } from '../../hooks/useStreamChat';
import { getConversationChannel, getMigration, migrateConversation } from '../../services/api';

const POLL_MS = 300;

type StreamCommunicationLogProps = {
  conversationId: string;
  currentUserId: string;
};

type ChannelRef = { channel_type: string; channel_id: string };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// The conversation's channel; a conversation not in Stream yet is migrated on demand first.
async function findChannel(
  conversationId: string,
  onMigrating: () => void,
  cancelled: () => boolean,
): Promise<ChannelRef> {
  const found = await getConversationChannel(conversationId);
  if (found.synced) return found;
  onMigrating();
  let migration = await migrateConversation(conversationId);
  while (!migration.synced && !cancelled()) {
    await sleep(POLL_MS);
    migration = await getMigration(conversationId);
  }
  return migration;
}

function useConversationChannel(client: StreamChat | null, conversationId: string) {
  const [channel, setChannel] = useState<StreamChannel | null>(null);
  const [migrating, setMigrating] = useState(false);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    if (!client) return;
    let cancelled = false;

    const open = async () => {
      const ref = await findChannel(conversationId, () => setMigrating(true), () => cancelled);
      if (cancelled) return;
      const found = client.channel(ref.channel_type, ref.channel_id);
      await found.watch();
      if (!cancelled) {
        setMigrating(false);
        setChannel(found);
      }
    };

    open().catch((e: unknown) => {
      if (!cancelled) setError(e instanceof Error ? e.message : String(e));
    });
    return () => {
      cancelled = true;
      setChannel(null);
    };
  }, [client, conversationId]);

  return { channel, migrating, error };
}

export function StreamCommunicationLog({
  conversationId,
  currentUserId,
}: StreamCommunicationLogProps) {
  const { client, error: connectError } = useStreamChat(currentUserId);
  const { channel, migrating, error } = useConversationChannel(client, conversationId);

  const problem = connectError ?? error;
  if (problem) {
    return (
      <p className="chat-page__error" role="alert">
        {problem}
      </p>
    );
  }
  if (!client) return <p className="chat-page__status">Loading chat…</p>;

  return (
    <div className="chat-page__log">
      <p className="chat-page__signed-in">
        Signed in as <strong>{client.user?.name ?? client.userID}</strong> · conversation{' '}
        <code>{conversationId}</code>
      </p>
      {channel ? (
        <Chat client={client} theme="str-chat__theme-light">
          <Channel channel={channel}>
            <Window>
              <ChannelHeader />
              <MessageList />
              <MessageComposer />
            </Window>
          </Channel>
        </Chat>
      ) : (
        <p className="chat-page__status">
          {migrating ? 'Moving this conversation to the new chat…' : 'Opening the conversation…'}
        </p>
      )}
    </div>
  );
}
