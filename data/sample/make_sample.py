#!/usr/bin/env python3
"""Writes the qbert sample data set: train.tsv (300 rows), valid.tsv (60), test.tsv (60).

Original Indonesian sentences written for this project, in the style of SmSA (IndoNLU):
lowercase, punctuation set off by spaces, one `text<TAB>label` row per line, labels
positive / neutral / negative in equal numbers. Each sentence is composed from
hand-written fragments: a topic (restaurants, hotels, phones, telecom, trains and buses,
ride hailing, flights, banks, couriers, public figures, places to visit, packaged food),
a subject of that topic and one of its positive, negative or neutral predicates, in one
of several sentence shapes. Some shapes mix a mild remark of the opposite polarity into
the sentence ("walaupun ..., ...", "..., tapi ...") so that single words do not decide
the label, and many negative sentences say no "tidak" at all. A few dozen free-standing
sentences are mixed in. Splits never share a sentence.

Standard library only; the fixed seed makes the output identical on every run:
    python3 data/sample/make_sample.py      (writes next to itself)
"""
import os
import random

SEED = 20240607
PER_LABEL = {"train": 100, "valid": 20, "test": 20}

# Each topic: subjects, then predicates that fit every subject of the topic, and mild
# remarks used in the mixed-polarity shapes (mild_neg inside positive sentences,
# mild_pos inside negative ones).
TOPICS = [
    dict(
        subjects=["warung soto bu ninik", "restoran padang di jalan merdeka", "rumah makan sunda ini",
                  "warung bakso pak kumis", "restoran seafood di pinggir pantai", "depot mie ayam langganan saya",
                  "kedai ramen yang baru buka itu", "rumah makan keluarga di jalan diponegoro",
                  "warung pecel dekat pasar"],
        pos=["makanannya enak dan porsinya pas", "sambalnya mantap dan bikin nagih",
             "pelayannya ramah serta cepat tanggap", "harganya terjangkau untuk rasa seenak ini",
             "kuahnya gurih dan dagingnya empuk", "tempatnya bersih dan nyaman untuk makan bersama keluarga",
             "menu andalannya benar-benar juara", "ikannya segar dan bumbunya meresap sampai ke dalam",
             "pesanan kami datang cepat walaupun pengunjung sedang ramai", "rasanya persis masakan rumah"],
        neg=["makanannya hambar dan sudah dingin saat disajikan", "pelayannya jutek dan lama sekali merespons",
             "kami menunggu pesanan hampir satu jam", "harganya kemahalan untuk rasa yang biasa saja",
             "mejanya lengket dan lantainya kotor", "nasinya keras dan ayamnya alot",
             "ada rambut di dalam sup yang saya pesan", "porsinya kecil sekali padahal harganya mahal",
             "tagihan kami dihitung salah dua kali", "perut saya mulas setelah makan di sana"],
        neu=["buka setiap hari mulai pukul sepuluh pagi", "menyediakan menu ayam bakar , ikan goreng dan sayur asem",
             "terletak di seberang kantor pos lama", "menerima pesanan antar melalui aplikasi",
             "baru saja pindah ke ruko di sebelah bank", "tutup setiap hari senin",
             "menyediakan ruang makan lesehan di lantai dua", "mulai menjual menu sarapan bulan ini"],
        mild_neg=["tempat parkirnya sempit", "antreannya cukup panjang", "harganya sedikit di atas rata-rata"],
        mild_pos=["tempatnya memang bagus untuk berfoto", "lokasinya memang strategis", "menunya memang banyak pilihan"],
    ),
    dict(
        subjects=["hotel di dekat stasiun itu", "penginapan di kawasan puncak", "hotel bintang tiga di pusat kota",
                  "homestay milik warga di desa wisata", "resor di tepi danau", "hotel tempat kami menginap kemarin",
                  "losmen di dekat terminal", "vila yang kami sewa untuk liburan keluarga"],
        pos=["kamarnya luas , bersih dan wangi", "resepsionisnya sigap membantu sejak kami datang",
             "sarapannya beragam dan rasanya lezat", "pemandangan dari balkonnya sangat indah",
             "kasurnya empuk sehingga tidur terasa nyenyak", "lokasinya strategis dan dekat ke mana-mana",
             "kolam renangnya bersih dan airnya hangat", "stafnya sopan dan mau membantu memesan taksi"],
        neg=["kamar mandinya bau dan airnya keruh", "ac di kamar kami mati sepanjang malam",
             "seprainya bernoda dan handuknya lembap", "proses check in memakan waktu lebih dari satu jam",
             "suara bising dari jalan membuat kami susah tidur", "wifinya putus-putus dan hanya ada di lobi",
             "kamar yang kami dapat berbeda jauh dengan foto di situs pemesanan",
             "resepsionisnya ketus ketika kami menyampaikan keluhan"],
        neu=["memiliki delapan puluh kamar dan dua ruang pertemuan", "menyediakan layanan antar jemput ke bandara",
             "mulai menerima tamu kembali setelah renovasi", "berjarak sekitar lima ratus meter dari stasiun",
             "menetapkan waktu check out pukul dua belas siang", "sedang memperluas area parkir di sisi timur"],
        mild_neg=["lokasinya agak jauh dari jalan raya", "harga kamarnya sedikit mahal", "lift-nya agak lambat"],
        mild_pos=["bangunannya memang megah", "lobinya memang cantik", "harganya memang murah"],
    ),
    dict(
        subjects=["ponsel yang saya beli bulan lalu", "hp baru adik saya", "ponsel lipat keluaran terbaru itu",
                  "hp murah merek lokal ini", "ponsel bekas yang saya beli di pasar", "hp yang dipakai ibu saya"],
        neu_subjects=["ponsel lipat keluaran terbaru itu", "hp murah merek lokal ini",
                      "ponsel seri terbaru merek korea itu", "tablet untuk pelajar itu"],
        pos=["baterainya awet sampai dua hari", "kameranya jernih bahkan di tempat gelap",
             "kinerjanya kencang untuk bermain gim", "layarnya tajam dan warnanya cerah",
             "desainnya elegan dan ringan digenggam", "pengisian dayanya cepat sekali",
             "harganya murah tapi kualitasnya bagus", "sinyalnya stabil dan suaranya jernih saat menelepon"],
        neg=["baterainya cepat habis padahal jarang dipakai", "layarnya retak setelah seminggu dipakai",
             "sering panas lalu mati sendiri", "tombol dayanya macet dan garansinya ditolak",
             "baru dipakai tiga hari sudah rusak", "kameranya buram dan aplikasinya sering keluar sendiri",
             "pengisian dayanya lama sekali", "speakernya sember ketika volumenya dinaikkan"],
        neu=["dijual dengan harga dua juta rupiah", "tersedia dalam warna hitam , putih dan biru",
             "diluncurkan secara resmi di jakarta minggu ini", "menggunakan prosesor buatan taiwan",
             "memiliki garansi resmi selama satu tahun", "mulai dipasarkan di indonesia bulan depan"],
        mild_neg=["kotak penjualannya tanpa pengisi daya", "bobotnya sedikit berat", "awalnya saya ragu membelinya"],
        mild_pos=["desainnya memang cantik", "harganya memang terjangkau", "awalnya saya berharap banyak"],
    ),
    dict(
        subjects=["provider internet di rumah saya", "penyedia layanan internet ini", "operator seluler itu",
                  "operator yang saya pakai sejak kuliah", "provider fiber yang baru saya pasang"],
        pos=["sinyalnya kuat bahkan di pelosok desa", "kecepatan internetnya stabil sepanjang hari",
             "gangguannya cepat diperbaiki", "harga paketnya bersahabat untuk mahasiswa",
             "memberi bonus kuota setiap bulan", "layanan pelanggannya cepat membalas keluhan"],
        neg=["sinyalnya hilang setiap kali hujan", "kuota saya cepat habis tanpa alasan yang jelas",
             "keluhan saya dibiarkan selama seminggu", "kecepatan internetnya jauh dari yang dijanjikan",
             "call centernya susah dihubungi dan jawabannya berbelit-belit",
             "tagihannya membengkak padahal pemakaian biasa saja", "koneksinya putus setiap malam"],
        neu=["menaikkan harga paket data mulai bulan depan", "memperluas jaringan 5g ke dua puluh kota",
             "membuka gerai layanan baru di mal", "mengumumkan nomor layanan pelanggan yang baru",
             "akan melakukan pemeliharaan jaringan pada malam hari", "meluncurkan paket keluarga untuk empat nomor"],
        mild_neg=["harga paketnya sedikit lebih mahal", "pemasangannya butuh tiga hari", "modemnya agak besar"],
        mild_pos=["promonya memang menarik", "pemasangannya memang cepat", "iklannya memang menjanjikan"],
    ),
    dict(
        subjects=["kereta tujuan surabaya", "bus antarkota yang saya naiki", "kereta bandara",
                  "bus malam ke semarang", "kereta ekonomi ke yogyakarta", "travel jurusan bandung"],
        pos=["berangkat dan tiba tepat waktu", "kursinya nyaman dan ruangannya sejuk",
             "petugasnya ramah dan sigap membantu penumpang", "harga tiketnya murah dan pemesanannya mudah",
             "perjalanannya terasa aman dan lancar", "armadanya bersih dan terawat"],
        neg=["terlambat tiga jam tanpa pemberitahuan", "petugasnya kasar kepada penumpang lansia",
             "kursinya sempit dan ac-nya bocor", "penuh sesak sampai penumpang berdiri di pintu",
             "lantainya kotor dan bau", "tas saya hilang di rak bagasi"],
        neu=["berangkat setiap dua jam", "menambah jadwal perjalanan selama libur lebaran",
             "tarifnya naik lima persen mulai awal tahun", "kini melayani pemesanan tiket lewat aplikasi",
             "akan memindahkan tempat keberangkatan pekan depan", "menempuh perjalanan sekitar empat jam"],
        mild_neg=["stasiunnya agak jauh dari rumah", "tiketnya cepat habis", "colokan listriknya cuma satu"],
        mild_pos=["tiketnya memang murah", "jadwalnya memang banyak", "keretanya memang baru"],
    ),
    dict(
        subjects=["taksi online yang saya pesan tadi pagi", "taksi dari bandara", "taksi online langganan kantor kami",
                  "mobil sewaan lewat aplikasi itu"],
        neu_subjects=["aplikasi ojek online itu", "layanan taksi online ini", "perusahaan taksi bandara"],
        pos=["pengemudinya sopan dan berkendara dengan hati-hati", "datang cepat dan tarifnya wajar",
             "mobilnya bersih dan wangi", "pengemudinya jujur mengembalikan dompet saya yang tertinggal",
             "pengemudinya hafal jalan tikus sehingga kami tiba lebih cepat"],
        neg=["pengemudinya membatalkan pesanan secara sepihak", "tarifnya naik seenaknya saat hujan",
             "pengemudinya merokok di dalam mobil", "saya diturunkan jauh dari alamat tujuan",
             "pengemudinya marah-marah ketika diminta lewat jalan lain", "argonya dimainkan sehingga ongkosnya mahal"],
        neu=["kini bisa dibayar dengan dompet digital", "menambah fitur pesan untuk orang lain",
             "mulai beroperasi di kota kami minggu ini", "menyesuaikan tarif dasar mulai senin",
             "membuka pendaftaran mitra pengemudi baru"],
        mild_neg=["saya harus menunggu sepuluh menit", "aplikasinya agak lambat", "titik jemputnya sempat salah"],
        mild_pos=["aplikasinya memang mudah dipakai", "promonya memang banyak", "tarifnya memang murah"],
    ),
    dict(
        subjects=["maskapai penerbangan itu", "penerbangan pagi ke medan", "pesawat yang kami tumpangi ke bali",
                  "maskapai berbiaya murah ini", "penerbangan tengah malam ke makassar"],
        neu_subjects=["maskapai penerbangan itu", "maskapai berbiaya murah ini", "maskapai pelat merah"],
        pos=["awak kabinnya ramah dan sigap", "berangkat tepat waktu dan mendarat dengan mulus",
             "kursinya lega dan makanannya enak", "proses naik pesawatnya tertib dan cepat",
             "petugas daratnya membantu ibu saya yang memakai kursi roda"],
        neg=["ditunda lima jam tanpa kompensasi", "koper saya rusak dan petugasnya lepas tangan",
             "pramugarinya ketus ketika kami meminta air", "jadwalnya diubah mendadak sehari sebelum berangkat",
             "bagasi kami tertinggal di bandara asal", "pengembalian dana tiket kami berbulan-bulan belum cair"],
        neu=["membuka rute baru ke labuan bajo", "menambah tiga pesawat baru tahun ini",
             "memindahkan penerbangannya ke terminal tiga", "memberlakukan batas bagasi dua puluh kilogram",
             "akan terbang empat kali seminggu"],
        mild_neg=["ruang kakinya agak sempit", "makanannya harus dibeli", "antrean check in cukup panjang"],
        mild_pos=["harga tiketnya memang murah", "jadwalnya memang pas", "pesawatnya memang baru"],
    ),
    dict(
        subjects=["bank tempat saya menabung", "kantor cabang bank di jalan sudirman", "bank pelat merah itu",
                  "bank swasta dekat rumah"],
        pos=["pelayanannya cepat dan petugasnya ramah", "proses membuka rekeningnya mudah dan cepat",
             "aplikasinya lancar dan mudah dipahami orang tua", "keluhan saya diselesaikan dalam sehari",
             "petugasnya sabar menjelaskan setiap biaya"],
        neg=["antreannya mengular dan hanya satu loket yang buka", "saldo saya terpotong biaya yang aneh",
             "aplikasinya sering gagal masuk saat gajian", "kartu saya terblokir tanpa pemberitahuan",
             "petugasnya lempar tanggung jawab ketika ditanya", "uang saya tertahan seminggu setelah transfer gagal"],
        neu=["buka sampai pukul tiga sore", "meluncurkan aplikasi versi terbaru", "memindahkan kantor cabangnya ke jalan ahmad yani",
             "menurunkan suku bunga kredit rumah", "akan menutup layanan pada hari libur nasional"],
        mild_neg=["biaya adminnya sedikit lebih tinggi", "kantornya agak sempit", "tampilan aplikasinya kuno"],
        mild_pos=["gedungnya memang nyaman", "bunganya memang lumayan", "kantornya memang dekat"],
    ),
    dict(
        subjects=["jasa kurir itu", "ekspedisi langganan toko saya", "layanan kilat ekspedisi ini",
                  "perusahaan ekspedisi itu"],
        pos=["barangnya sampai sehari lebih cepat dari perkiraan", "kurirnya ramah dan selalu mengabari lebih dulu",
             "kemasannya rapi sehingga barang pecah belah aman", "ongkos kirimnya murah untuk jarak sejauh itu",
             "pelacakannya akurat dan mudah dipantau"],
        neg=["paket saya nyasar ke kota lain", "barang saya datang dalam keadaan penyok",
             "status paketnya berhenti di gudang selama dua minggu", "kurirnya melempar paket ke dalam pagar",
             "paket saya dinyatakan terkirim padahal belum sampai", "ongkos kirimnya mahal dan barangnya lambat"],
        neu=["menambah gudang baru di cikarang", "libur mengantar pada hari minggu",
             "menerima pengiriman barang sampai pukul sembilan malam", "membuka agen baru di kecamatan ini",
             "mengumumkan tarif pengiriman antarpulau yang baru"],
        mild_neg=["ongkos kirimnya sedikit mahal", "agennya agak jauh", "antrean di agennya cukup panjang"],
        mild_pos=["ongkirnya memang murah", "agennya memang dekat", "pelacakannya memang lengkap"],
    ),
    dict(
        subjects=["gubernur yang baru dilantik itu", "wali kota kami", "bupati terpilih", "wakil wali kota",
                  "gubernur petahana"],
        pos=["cepat tanggap menangani banjir kemarin", "programnya benar-benar dirasakan warga kecil",
             "rajin turun ke lapangan mendengar keluhan warga", "tegas memberantas pungutan liar",
             "berhasil memperbaiki jalan-jalan yang rusak", "jujur dan terbuka soal anggaran"],
        neg=["hanya pandai berjanji saat kampanye", "menghilang ketika warga butuh bantuan",
             "kebijakannya menyusahkan pedagang kecil", "terseret kasus korupsi dana bantuan",
             "lebih sibuk pencitraan daripada bekerja", "menyalahkan warga atas masalah sampah"],
        neu=["akan meresmikan pasar baru pada hari kamis", "menghadiri rapat koordinasi di ibu kota",
             "dijadwalkan berkunjung ke sekolah dasar di kecamatan ini",
             "menyampaikan pidato pada upacara hari kemerdekaan", "menerima kunjungan duta besar jepang",
             "mengumumkan hasil rapat anggaran pada sore hari"],
        mild_neg=["gaya bicaranya agak kaku", "awalnya banyak yang meragukan", "kebijakannya sempat diprotes"],
        mild_pos=["pidatonya memang bagus", "janjinya memang banyak", "orangnya memang ramah"],
    ),
    dict(
        subjects=["pantai di selatan kota", "taman kota yang baru direnovasi", "air terjun di kaki gunung itu",
                  "museum sejarah di pusat kota", "kebun binatang itu", "pasar malam di alun-alun",
                  "danau di atas bukit"],
        pos=["suasananya asri dan menyenangkan", "tiket masuknya murah dan fasilitasnya lengkap",
             "tempatnya bersih dan terawat", "cocok untuk liburan bersama anak-anak",
             "petugasnya ramah dan informatif", "suasananya tenang dan jauh dari bising"],
        neg=["sampah berserakan di mana-mana", "toiletnya jorok dan airnya mati",
             "pungutan liar di pintu masuk membuat kesal", "jalan menuju ke sana rusak parah",
             "tempatnya kumuh dan tidak terawat", "pedagangnya memaksa pengunjung membeli"],
        neu=["buka dari pukul delapan pagi hingga lima sore", "tiket masuknya dua puluh ribu rupiah per orang",
             "berjarak sekitar dua jam dari pusat kota", "akan ditutup sementara untuk perbaikan",
             "dikelola oleh pemerintah daerah sejak tahun lalu", "bisa dicapai dengan angkot dari terminal"],
        mild_neg=["parkirnya cukup mahal", "jalannya agak menanjak", "pengunjungnya ramai sekali saat libur"],
        mild_pos=["pemandangannya memang bagus", "tiketnya memang murah", "tempatnya memang luas"],
    ),
    dict(
        subjects=["keripik pedas oleh-oleh dari bandung", "mi instan rasa baru itu", "kue lapis dari toko roti itu",
                  "roti sobek merek baru itu", "kopi kemasan yang dijual di minimarket",
                  "sambal botolan buatan ibu rumah tangga ini"],
        neu_subjects=["keripik pedas oleh-oleh dari bandung", "mi instan rasa baru itu", "kopi kemasan merek lokal ini",
                      "sambal botolan buatan ibu rumah tangga ini"],
        pos=["rasanya enak dan bikin ketagihan", "isinya melimpah untuk harga segitu", "rasanya pas di lidah",
             "aromanya harum dan bahannya terasa segar", "kemasannya rapi dan praktis dibawa"],
        neg=["rasanya hambar , jauh dari iklannya", "sudah basi ketika dibuka", "kemasannya bocor dan isinya berantakan",
             "rasanya aneh dan meninggalkan pahit di lidah", "isinya cuma setengah kemasan", "baunya tengik"],
        neu=["kini dijual di minimarket di seluruh indonesia", "diproduksi di jawa barat",
             "dijual seharga lima belas ribu rupiah per bungkus", "kini tersedia dalam kemasan yang lebih besar",
             "mendapat sertifikat halal bulan lalu"],
        mild_neg=["harganya sedikit mahal", "kemasannya kurang menarik", "belinya harus antre"],
        mild_pos=["kemasannya memang menarik", "iklannya memang gencar", "harganya memang murah"],
    ),
]

# Openers and closers fit every topic (a governor as well as a hotel).
POS_OPENERS = ["mantap sekali ,", "puas banget ,", "senang sekali ,", "jujur saya terkesan ,", "salut ,",
               "patut diacungi jempol ,", "keren ,"]
NEG_OPENERS = ["kecewa berat ,", "parah ,", "jujur kecewa ,", "sungguh keterlaluan ,",
               "benar-benar mengecewakan ,", "payah ,", "miris ,"]
POS_CLOSERS = ["sukses terus !", "pertahankan ya !", "terima kasih banyak !", "mantap pokoknya .",
               "semoga terus begini .", "luar biasa ."]
NEG_CLOSERS = ["jangan sampai terulang .", "mohon segera diperbaiki .", "sungguh menyebalkan .",
               "benar-benar keterlaluan .", "kecewa sekali .", "semoga ada perbaikan ."]
NEU_LEADS = ["menurut keterangan resmi ,", "kabarnya", "informasi saja ,", "diberitakan bahwa",
             "sesuai pengumuman ,"]
NEU_QUESTIONS = ["ada yang tahu apakah {s} {p} ?", "mau tanya , benarkah {s} {p} ?",
                 "apa benar {s} {p} ?"]
NEU_CLOSERS = ["informasi lebih lanjut ada di situs resminya .", "hal itu disampaikan dalam keterangan tertulis .",
               "rencana ini disampaikan dalam jumpa pers kemarin ."]

# Free-standing sentences that fit no topic template.
FREE = {
    "positive": [
        "pelayanan memuaskan , harga bersahabat , pokoknya top !",
        "liburan kali ini menyenangkan sekali , semua berjalan sesuai rencana .",
        "anak-anak senang sekali diajak ke sana , minggu depan kami ke sana lagi .",
        "baru kali ini saya belanja daring tanpa drama , semuanya rapi .",
        "terima kasih untuk para relawan yang bergerak cepat membantu korban banjir .",
        "program beasiswa ini sangat membantu mahasiswa dari keluarga sederhana .",
        "acara konsernya seru dan tertib , panitianya patut diacungi jempol .",
        "guru les anak saya sabar sekali dan cara mengajarnya menyenangkan .",
        "bengkel di ujung jalan itu jujur , tidak mengganti suku cadang yang masih bagus .",
        "puskesmas di desa kami sekarang bersih dan dokternya ramah .",
        "pertandingan semalam luar biasa , timnas bermain dengan semangat tinggi .",
        "film itu menyentuh hati dan para pemainnya berakting dengan sangat baik .",
    ],
    "negative": [
        "sudah tiga kali lapor tapi lampu jalan di depan rumah masih padam .",
        "antre dua jam untuk mengurus ktp lalu disuruh kembali besok , menyebalkan .",
        "bengkel itu mengganti onderdil yang masih bagus lalu meminta bayaran dua kali lipat .",
        "jalan di kampung kami berlubang di mana-mana dan sudah makan korban .",
        "panitia konser itu kacau , penonton berdesakan dan banyak yang pingsan .",
        "filmnya membosankan , ceritanya bertele-tele dan akhirnya mudah ditebak .",
        "timnas bermain buruk semalam , lini belakangnya kocar-kacir .",
        "harga cabai naik gila-gilaan , pedagang kecil menjerit .",
        "belanja daring kali ini zonk , barangnya palsu dan penjualnya menghilang .",
        "puskesmas dekat rumah jorok dan petugasnya asyik main ponsel .",
        "banjir lagi , selokan mampet dan tak ada yang peduli .",
        "listrik padam seharian tanpa pengumuman , semua makanan di kulkas basi .",
    ],
    "neutral": [
        "besok pagi jalan protokol ditutup untuk acara lari pagi bersama .",
        "pendaftaran sekolah tahun ini dibuka secara daring mulai senin .",
        "harga bawang merah di pasar induk hari ini tiga puluh ribu rupiah per kilogram .",
        "pemilihan ketua rt akan dilaksanakan minggu depan di balai warga .",
        "konser amal itu akan digelar di lapangan kota pada sabtu malam .",
        "perpustakaan daerah kini buka juga pada hari sabtu .",
        "timnas akan bertanding melawan vietnam pada hari kamis .",
        "film itu tayang di bioskop mulai pekan ini .",
        "ada yang tahu bengkel resmi terdekat dari terminal ?",
        "puskesmas kecamatan melayani vaksinasi setiap selasa dan jumat .",
        "cuaca besok diperkirakan berawan dengan peluang hujan ringan pada sore hari .",
        "rapat warga membahas jadwal ronda dan iuran kebersihan .",
    ],
}


def compose(rng, label):
    t = rng.choice(TOPICS)
    if label == "neutral":
        s = rng.choice(t.get("neu_subjects", t["subjects"]))
        p = rng.choice(t["neu"])
        shape = rng.randrange(5)
        if shape == 0:
            return f"{s} {p} ."
        if shape == 1:
            return f"{rng.choice(NEU_LEADS)} {s} {p} ."
        if shape == 2:
            return rng.choice(NEU_QUESTIONS).format(s=s, p=p)
        if shape == 3:
            return f"{s} {p} . {rng.choice(NEU_CLOSERS)}"
        p2 = rng.choice([x for x in t["neu"] if x != p])
        return f"{s} {p} , selain itu juga {p2} ."
    s = rng.choice(t["subjects"])
    good = label == "positive"
    preds = t["pos"] if good else t["neg"]
    p = rng.choice(preds)
    p2 = rng.choice([x for x in preds if x != p])
    shape = rng.randrange(7)
    if shape == 0:
        return f"{s} {p} ."
    if shape == 1:
        return f"{s} {p} , {rng.choice(['selain itu', 'ditambah lagi', 'apalagi'])} {p2} ."
    if shape == 2:
        return f"{rng.choice(POS_OPENERS if good else NEG_OPENERS)} {s} {p} ."
    if shape == 3:
        return f"{s} {p} . {rng.choice(POS_CLOSERS if good else NEG_CLOSERS)}"
    if shape == 4:  # mixed polarity, the main clause decides
        if good:
            return f"walaupun {rng.choice(t['mild_neg'])} , {s} {p} ."
        return f"{rng.choice(t['mild_pos'])} , tapi {s} {p} ."
    if shape == 5:
        if good:
            return f"{s} {p} , cuma {rng.choice(t['mild_neg'])} . {rng.choice(POS_CLOSERS)}"
        return f"{rng.choice(t['mild_pos'])} , sayangnya {p} . {rng.choice(NEG_CLOSERS)}"
    return f"{rng.choice(POS_OPENERS if good else NEG_OPENERS)} {s} {p} , {p2} ."


def main():
    rng = random.Random(SEED)
    total = sum(PER_LABEL.values())
    pools = {}
    for label in ("positive", "neutral", "negative"):
        seen = set(FREE[label])
        pool = list(FREE[label])
        while len(pool) < total:
            s = compose(rng, label)
            if s not in seen:
                seen.add(s)
                pool.append(s)
        rng.shuffle(pool)
        pools[label] = pool
    here = os.path.dirname(os.path.abspath(__file__))
    start = 0
    for split, n in PER_LABEL.items():
        rows = [(s, label) for label, pool in pools.items() for s in pool[start:start + n]]
        start += n
        rng.shuffle(rows)
        with open(os.path.join(here, f"{split}.tsv"), "w", encoding="utf-8", newline="\n") as f:
            for s, label in rows:
                f.write(f"{s}\t{label}\n")


if __name__ == "__main__":
    main()
