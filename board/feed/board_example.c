/*
 * board_example - a board firmware stub on ipcd's board socket.
 *
 *   board_example SOCKET [privacy on|off] [-n N]
 *
 * Prints every event as "EVENT session value" (turn the encoder or an LED on
 * at LiveVideoStart, open the speaker amplifier at SpeakerStart), after
 * sending a privacy command when asked. With -n it exits after N events.
 */
#include "ipcd_board.h"

int main(int argc, char **argv)
{
	struct ipcd_board_reader r;
	long limit = -1, seen = 0;
	int fd, i;

	if (argc < 2) {
		fprintf(stderr, "usage: board_example SOCKET [privacy on|off] [-n N]\n");
		return 2;
	}
	fd = ipcd_board_connect(argv[1]);
	if (fd < 0) {
		perror("connect");
		return 1;
	}
	for (i = 2; i < argc; i++) {
		if (strcmp(argv[i], "privacy") == 0 && i + 1 < argc) {
			if (ipcd_board_privacy(fd, strcmp(argv[++i], "on") == 0, 1) < 0) {
				perror("write");
				return 1;
			}
		} else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
			limit = strtol(argv[++i], NULL, 10);
		}
	}
	r.fd = fd;
	r.len = 0;
	for (char *line; limit != 0 && (line = ipcd_board_read_line(&r)) != NULL;) {
		char type[16], event[64], session[160];
		long value = 0, res = 0;

		if (ipcd_board_str(line, "type", type, sizeof(type)) != 0)
			continue;
		if (strcmp(type, "reply") == 0) {
			ipcd_board_int(line, "res", &res);
			printf("reply %ld\n", res);
			fflush(stdout);
			continue;
		}
		if (ipcd_board_str(line, "event", event, sizeof(event)) != 0)
			continue;
		if (ipcd_board_str(line, "session", session, sizeof(session)) != 0)
			strcpy(session, "-");
		ipcd_board_int(line, "value", &value);
		printf("%s %s %ld\n", event, session, value);
		fflush(stdout);
		seen++;
		if (limit > 0 && seen >= limit)
			break;
	}
	close(fd);
	return 0;
}
