import { ApiProblem } from "../api";

/** A failed request in words: the gateway's problem detail, or why it could not be asked. */
export function ErrorNotice({ error }: { error: unknown }) {
  if (!error) return null;
  const text =
    error instanceof ApiProblem
      ? `${error.title}: ${error.message}`
      : error instanceof Error
        ? error.message
        : String(error);
  return (
    <p className="banner banner-error" role="alert">
      <span aria-hidden="true">✖ </span>
      {text}
    </p>
  );
}
