// The delivery's stages: each reached one with its time, the current one marked in words and
// by an icon (never by colour alone), then the state it left the happy path for, if it did.
import { STEP_LABELS, stateLabel, formatTime } from "../labels";
import type { ProgressStep } from "../types";

export function Stepper({ steps }: { steps: ProgressStep[] }) {
  return (
    <ol className="stepper" aria-label="Delivery progress">
      {steps.map((step) => {
        const reached = !!step.reached_at;
        const status = step.current ? "current" : reached ? "done" : "pending";
        const label = STEP_LABELS[step.state] ?? stateLabel(step.state);
        return (
          <li
            key={step.state}
            className={`step step-${status}`}
            aria-current={step.current ? "step" : undefined}
            data-state={step.state}
          >
            <span className="step-icon" aria-hidden="true">
              {step.current ? "●" : reached ? "✓" : "○"}
            </span>
            <span className="step-label">{label}</span>
            <span className="step-time">
              {reached ? <time dateTime={step.reached_at}>{formatTime(step.reached_at)}</time> : "not yet"}
            </span>
            <span className="visually-hidden">
              {step.current ? " (current stage)" : reached ? " (done)" : " (to come)"}
            </span>
          </li>
        );
      })}
    </ol>
  );
}
