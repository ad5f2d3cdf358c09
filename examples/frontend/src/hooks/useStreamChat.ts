import { useEffect, useState } from 'react';
import { StreamChat } from 'stream-chat';
import { getStreamChatToken } from '../services/api';

// Connects the signed-in user to Stream with a token from the app; disconnects on unmount.
export function useStreamChat(userId: string | undefined) {
  const [client, setClient] = useState<StreamChat | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    if (!userId) return;
    let chatClient: StreamChat | null = null;
    let cancelled = false;

    const connect = async () => {
      const { token, api_key, user_id, base_url } = await getStreamChatToken();
      chatClient = new StreamChat(api_key, base_url ? { baseURL: base_url } : {});
      await chatClient.connectUser({ id: user_id }, token);
      if (!cancelled) setClient(chatClient);
    };

    connect().catch((e: unknown) => {
      if (!cancelled) setError(e instanceof Error ? e.message : String(e));
    });

    return () => {
      cancelled = true;
      setClient(null);
      void chatClient?.disconnectUser();
    };
  }, [userId]);

  return { client, error };
}
