// The plain stream-chat client, as a service of the app's would use it: a token from the
// app's /chat/token, the conversation's channel from /chat/conversations/{id}/channel, a
// WebSocket to Stream, the channel watched. Prints one JSON line when watching, then one
// per message.new, and exits after `count` of them.
//
//   node scripts/watch-channel.mjs <app url> <user id> <conversation id> [count]
import { StreamChat } from 'stream-chat';

const [appUrl, userId, conversationId, count = '1'] = process.argv.slice(2);
if (!appUrl || !userId || !conversationId) {
  console.error('usage: watch-channel.mjs <app url> <user id> <conversation id> [count]');
  process.exit(2);
}

async function fromApp(path) {
  const response = await fetch(`${appUrl}${path}`, { headers: { 'X-Demo-User': userId } });
  if (!response.ok) {
    throw new Error(`GET ${path}: HTTP ${response.status} ${await response.text()}`);
  }
  return response.json();
}

try {
  const token = await fromApp('/chat/token');
  const ref = await fromApp(`/chat/conversations/${conversationId}/channel`);
  const client = new StreamChat(token.api_key, token.base_url ? { baseURL: token.base_url } : {});
  await client.connectUser({ id: token.user_id }, token.token);
  const channel = client.channel(ref.channel_type, ref.channel_id);
  let left = Number(count);
  channel.on('message.new', (event) => {
    const { message } = event;
    console.log(
      JSON.stringify({ type: event.type, cid: event.cid, id: message?.id, text: message?.text }),
    );
    left -= 1;
    if (left <= 0) client.disconnectUser().then(() => process.exit(0));
  });
  await channel.watch();
  console.log(
    JSON.stringify({ type: 'watching', cid: channel.cid, connection_id: client._getConnectionID() }),
  );
} catch (error) {
  console.error(`watch-channel: ${error instanceof Error ? error.message : error}`);
  process.exit(1);
}
