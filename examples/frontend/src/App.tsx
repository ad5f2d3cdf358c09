import { StreamCommunicationLog } from './components/dashboard/CommunicationLog';

export default function App() {
  const params = new URLSearchParams(window.location.search);
  const user = params.get('user');
  const conversation = params.get('conversation');

  if (!user || !conversation) {
    return (
      <p className="chat-page__error" role="alert">
        Open this page as /?user=&lt;user id&gt;&amp;conversation=&lt;conversation id&gt;
      </p>
    );
  }
  return <StreamCommunicationLog conversationId={conversation} currentUserId={user} />;
}
